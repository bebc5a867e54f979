"""The commands of ``bear``: each opens the book, calls the Workspace API and prints."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from bear.cli.common import (
    default_db,
    is_remote,
    jsonable,
    listed,
    local_actor,
    local_only,
    open_book,
    print_frame,
    print_json,
    printable,
    records,
    selection_of,
)
from bear.config.defs import dumps
from bear.errors import BearError, ImportProblemError
from bear.wire import run_json

REASONS_SHOWN = 50  # violations `bear preview --reasons` lists unless told how many


def cmd_init(a: argparse.Namespace) -> int:
    local_only(a, "init", "it creates or migrates the file")
    with open_book(a) as ws:
        n = ws.sql("SELECT count(*) AS n FROM schema_migrations")["n"][0]
        print(f"database {ws.path} ready ({n} migration(s) applied)")
    return 0


def cmd_seed(a: argparse.Namespace) -> int:
    import bear

    local_only(a, "seed")
    with open_book(a) as ws:
        counts = bear.demo.seed(ws, events=a.events, seed=a.seed)
    if a.json:
        print_json(counts)
    else:
        print(
            ", ".join(
                f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}" for k, v in counts.items()
            )
        )
    return 0


def cmd_import(a: argparse.Namespace) -> int:
    from bear.io import KINDS

    files = {k: getattr(a, k) for k in KINDS if getattr(a, k, None)}
    if not files:
        raise BearError("nothing to import: give --events, --items and/or other files")
    with open_book(a) as ws:
        try:
            report = ws.import_files(dry_run=a.dry_run, actor=local_actor(), **files)
        except ImportProblemError as exc:
            if a.json:
                print_json(
                    {
                        "ok": False,
                        "error": str(exc),
                        "type": type(exc).__name__,
                        "problems": exc.problems,
                    }
                )
            else:
                print(f"error: {exc}", file=sys.stderr)
                for p in exc.problems[:200]:
                    where = ", ".join(
                        [str(p["file"])]
                        + [f"{k} {p[k]}" for k in ("row", "column") if p.get(k) is not None]
                    )
                    print(f"  {printable(where)}: {printable(p['problem'])}", file=sys.stderr)
                if len(exc.problems) > 200:
                    print(f"  … and {len(exc.problems) - 200} more", file=sys.stderr)
            return 2
    if a.json:
        print_json({"ok": True, **report})
    else:
        verb = "validated (dry run, nothing written)" if a.dry_run else "imported"
        print(f"{verb}: " + ", ".join(f"{k} {v:,}" for k, v in report["rows"].items()))
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    with open_book(a) as ws:
        written = ws.export_files(a.out, fmt=a.format, raw=a.raw)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def cmd_settings(a: argparse.Namespace) -> int:
    with open_book(a) as ws:
        if a.action == "list":
            _settings_list(ws, a.json)
        elif a.action == "get":
            if not a.name:
                raise BearError("settings get: name the setting")
            name = a.name[0]
            if name not in {row["name"] for row in ws.settings.describe()}:
                unknown = getattr(ws.settings, "unknown", None)  # a local book explains
                if unknown is not None:
                    raise unknown(name)
                raise BearError(f"unknown setting {name!r}")
            value = getattr(ws.settings, name)
            print(
                json.dumps(value, default=jsonable)
                if a.json
                else (json.dumps(value) if isinstance(value, list) else value)
            )
        elif a.action == "history":
            _settings_history(ws, a)
        elif a.action == "reset":
            if not a.name:
                raise BearError("settings reset: name the settings to put back to their defaults")
            for k, v in ws.settings.reset(*a.name, actor=local_actor()).items():
                print(f"{k} = {dumps(v)}")
        else:
            if not a.name:
                raise BearError("settings set: give NAME=VALUE pairs")
            values = {}
            for pair in a.name:
                if "=" not in pair:
                    raise BearError(f"settings set: {pair!r} is not NAME=VALUE")
                k, v = pair.split("=", 1)
                values[k.strip()] = v
            clean = ws.settings.update_by(local_actor(), **values)
            for k, v in clean.items():
                print(f"{k} = {dumps(v)}")
    return 0


def _settings_list(ws: Any, as_json: bool) -> None:
    """Every setting, BEAR's then the loaded plugins'; values stored for plugins that are not
    loaded are kept, and listed apart (``"loaded": false`` in JSON)."""
    rows = ws.settings.describe()
    unloaded = ws.settings.unloaded() if hasattr(ws.settings, "unloaded") else []
    if as_json:
        print_json([*rows, *({**u, "loaded": False} for u in unloaded)])
        return
    print_frame(pd.DataFrame(rows)[["name", "value", "default", "allowed"]], False)
    if unloaded:
        print("\nStored for plugins that are not loaded (kept, not applied):")
        for u in unloaded:
            print(printable(f"  {u['name']} = {json.dumps(u['value'])}  ({u['note']})"))


def _settings_history(ws: Any, a: argparse.Namespace) -> None:
    if len(a.name) > 1:
        raise BearError("settings history: name one setting, or none for every setting")
    frame = ws.settings.history(a.name[0] if a.name else None, limit=a.limit)
    if a.json:
        print_json(records(frame))
        return
    shown = pd.DataFrame(
        {
            "changed_at": frame["changed_at"].astype(str).str[:19],
            "actor": frame["actor"].map(printable),
            "name": frame["name"],
            "old": [printable(json.dumps(v)) for v in frame["old"]],
            "new": [printable(json.dumps(v)) for v in frame["new"]],
        }
    )
    print_frame(shown, False)


def cmd_events(a: argparse.Namespace) -> int:
    with open_book(a) as ws:
        sel = listed(ws, a)
        sort = []
        for s in a.sort or []:
            col, _, d = s.partition(":")
            sort.append((col, d or "asc"))
        page = sel.page(a.offset, a.limit, sort=sort)
        if a.json:
            print_json(
                {
                    "count": len(sel),
                    "offset": a.offset,
                    "events": records(page),
                    "totals": records(sel.totals()),
                }
            )
        else:
            print_frame(
                page[
                    ["id", "name", "event_date", "account", "project", "currency", "summary_amount"]
                ],
                False,
            )
            print(f"\n{len(sel):,} matching; showing {len(page)} from {a.offset}")
    return 0


def cmd_preview(a: argparse.Namespace) -> int:
    action = a.action.replace("-", "_")
    with open_book(a) as ws:
        sel = selection_of(ws, a, "awaiting_invoice" if action == "invoice" else "awaiting_release")
        pv = ws.preview(sel, action=action, full=a.full)
        if a.json:
            reasons = {}
            if a.reasons:
                shown = pv.violations.head(a.reasons)[REASON_COLUMNS]
                left = len(pv.violations) - len(shown)
                reasons = {"reasons": records(shown), "reasons_left_out": left}
            print_json(
                {
                    **pv.counts(),
                    "expected_documents": records(pv.expected_documents),
                    "by_rule": records(pv.by_rule),
                    "blast_radius": len(pv.blast_radius),
                    "violations": records(pv.violations.head(a.max_violations)),
                    "eligible_ids": pv.eligible_ids if a.with_ids else None,
                    **reasons,
                }
            )
            return 0
        print(
            f"{pv.action}: {pv.selected:,} selected, {pv.eligible:,} eligible"
            + (f", {pv.ineligible:,} ineligible" if pv.validated else f" — {pv.reason}")
        )
        if len(pv.expected_documents):
            print("\nExpected documents:")
            print_frame(pv.expected_documents, False)
        if len(pv.by_rule):
            print("\nReasons:")
            print_frame(pv.by_rule, False)
        if len(pv.blast_radius):
            print(
                f"\nBlast radius: {len(pv.blast_radius):,} releasable events share a batch with an unreleasable "
                "one (they would fail with it without validation)."
            )
        if a.reasons:
            _print_reasons(pv, a.reasons)
    return 0


REASON_COLUMNS = ["billing_event_id", "rule_id", "severity", "message"]


def _print_reasons(pv: Any, limit: int) -> None:
    """Each violation on a line of its own — event, rule, severity, message — the first
    ``limit`` of them, then how many more there are."""
    v = pv.violations
    if not pv.validated:
        print(f"\nNo violations listed: {pv.reason}")
        return
    if v.empty:
        print("\nNo violations.")
        return
    print(f"\nViolations ({len(v):,}):")
    for row in v.head(limit).itertuples(index=False):
        line = f"  event {row.billing_event_id}  {row.rule_id} ({row.severity}): {row.message}"
        print(printable(line))
    if len(v) > limit:
        print(f"  … and {len(v) - limit:,} more (--reasons N shows more, --json lists them)")


def _show_run(res: Any, as_json: bool) -> None:
    if as_json:
        print_json(run_json(res))
        return
    # the first line keeps its form (its status and stage); the last one says the outcome
    print(
        printable(f"run {res.id} ({res.action}) by {res.requested_by}: {res.status} [{res.stage}]")
    )
    print(f"  selected {res.selected:,}, left out up front {res.excluded:,}")
    print(f"  batches {res.batches_done:,}/{res.batches:,}, failed {res.failed_batches:,}")
    print(f"  released {res.released:,}, not released {res.not_released:,}")
    print(
        f"  sales invoices {res.sales_invoices:,}, credit notes {res.credit_notes:,}, "
        f"not passed to accounting {res.not_passed:,}"
    )
    if res.action == "revert":
        print(f"  reason: {printable(res.reason or '')}")
        print(
            f"  reverted {res.reverted:,}, documents discarded {res.discarded:,}, "
            f"not reverted {res.not_reverted:,}"
        )
    if res.process_run_id is not None:
        print(f"  process run {res.process_run_id}")
    if res.error:
        print(printable(f"  error: {res.error}"))
    why = f" ({res.shortfall})" if res.shortfall and res.outcome != "completed" else ""
    print(f"outcome: {res.outcome}{why}")


def run_exit_status(res: Any) -> int:
    """``bear run``'s exit status: 0 when the run did its work (``completed``, or ``completed
    with failures`` — the output says which events it could not process), 1 when it failed
    (an error, or nothing done of what it was asked) or was cancelled."""
    return 0 if res.outcome in ("completed", "completed with failures") else 1


def cmd_run(a: argparse.Namespace) -> int:
    if a.run_command in ("show", "cancel"):
        with open_book(a) as ws:
            res = ws.run(a.run_id) if a.run_command == "show" else ws.cancel(a.run_id)
            _show_run(res, a.json)
        return 0
    action = a.run_command.replace("-", "_")
    # --no-wait only queues: this process must not start executing anything before it exits.
    with open_book(a, resume=not a.no_wait) as ws:
        remote = is_remote(ws)
        if not remote and not a.user:
            raise BearError(
                "run: give --user, who starts the run (an e-mail address gets the e-mail)"
            )
        kind = {"invoice": "awaiting_invoice", "revert": "released"}.get(action, "awaiting_release")
        sel = selection_of(ws, a, kind)
        if remote and a.user and a.user != ws.user:
            print(
                printable(f"note: the run is recorded as {ws.user}, the token's user"),
                file=sys.stderr,
            )
        handle = ws.queue(
            action,
            sel,
            a.user,
            full=a.full,
            start=not a.no_wait,
            reason=getattr(a, "reason", None),
        )
        run_id = handle.id
        if a.no_wait:
            if a.json:
                print_json({"id": run_id, "status": "queued", "outcome": "queued"})
            elif remote:
                print(
                    f"run {run_id} queued on {ws.url}; `bear --server {ws.url} run show {run_id}`"
                )
            else:
                # queued in the database; `bear worker` (or any owner) executes it
                print(
                    f"run {run_id} queued; `bear worker --db {ws.path}` or the dashboard will execute it"
                )
            return 0
        res = handle.wait()
        if not remote:
            # The e-mails are sent by this process's outbox thread: give them their first
            # attempt before the process exits (a failure stays in the outbox for the next
            # owner). A server's own outbox sends those of the runs it executes.
            ws.wait_notifications(res.id, timeout=30)
        _show_run(res, a.json)
    return run_exit_status(res)


def cmd_post(a: argparse.Namespace) -> int:
    if bool(a.document_ids) == (a.run is not None):
        raise BearError("post: give document ids or --run RUN_ID (one of the two)")
    with open_book(a) as ws:
        what = a.run if a.run is not None else a.document_ids
        kwargs = {} if is_remote(ws) or not a.user else {"user": a.user}
        df = ws.post(what, **kwargs)
        if a.json:
            print_frame(df, True)
        else:
            print(f"posted {len(df):,} document(s): {', '.join(df['number'].astype(str))}")
    return 0


def cmd_history(a: argparse.Namespace) -> int:
    with open_book(a) as ws:
        df = ws.history(a.billing_event_id)
        cols = [
            "action",
            "happened_at",
            "run_id",
            "actor",
            "outcome",
            "document_before_number",
            "document_after_number",
            "reversing_document_number",
            "reason",
        ]
        print_frame(df if a.json else df[cols], a.json)
    return 0


def cmd_runs(a: argparse.Namespace) -> int:
    with open_book(a) as ws:
        df = ws.runs(limit=a.limit)
        cols = [
            "id",
            "action",
            "requested_by",
            "status",
            "outcome",
            "released",
            "not_released",
            "sales_invoices",
            "credit_notes",
            "not_passed",
            "process_run_id",
            "created_at",
        ]
        print_frame(df if a.json else df[cols], a.json)
    return 0


def cmd_plugins(a: argparse.Namespace) -> int:
    with open_book(a) as ws:
        plugins, rules = ws.plugin_list(), ws.rules()
        if a.json:
            print_json({"plugins": records(plugins), "rules": records(rules)})
            return 0
        shown = [c for c in ("name", "version", "source", "hooks", "status") if c in plugins]
        print("Plugins:")
        print_frame(plugins[shown], False)
        failed = plugins[plugins["status"] == "failed"] if "status" in plugins else plugins[:0]
        for error in failed["error"]:
            print(printable(f"  failed: {error}"))
        print("\nRules:")
        cols = ["id", "kind", "stage", "severity", "plugin", "enabled"]
        print_frame(rules[[c for c in cols if c in rules]], False)
    return 0


def cmd_worker(a: argparse.Namespace) -> int:
    import time

    local_only(a, "worker", "the server executes its own runs")
    with open_book(a, resume=True) as ws:
        ws.runner.start()
        print(f"worker on {ws.path}: running queued runs (Ctrl-C to stop)", flush=True)
        try:
            while True:
                if a.once and ws.runner.idle():
                    ws.wait_notifications(timeout=30)  # their first attempt, before exiting
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_notifications(a: argparse.Namespace) -> int:
    with open_book(a) as ws:
        if a.action == "retry":
            res = ws.retry_notifications()
            print(f"sent {res['sent']}, still failing {res['failed']}")
            return 0 if res["failed"] == 0 else 1
        df = ws.notifications(run_id=a.run)
        cols = ["id", "run_id", "kind", "channel", "recipient", "status", "attempts", "last_error"]
        print_frame(df if a.json else df[cols], a.json)
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from bear.server import serve

    local_only(a, "serve", "it serves a file of this machine")
    serve(
        a.db or default_db(),
        port=a.port,
        address=a.address,
        user=a.user,
        startup={
            k: v
            for k, v in (("plugins_dir", a.plugins_dir), ("rules_file", a.rules_file))
            if v is not None
        },
        allow_hosts=a.allow_host or (),
        safe_mode=a.safe_mode,
    )
    return 0
