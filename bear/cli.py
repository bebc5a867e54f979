"""The ``bear`` command: admins' and automation's face of the same Workspace API.

Every command takes ``--db`` (default ``$BEAR_DB`` or ``data/bear.duckdb``). Errors are one
plain line on stderr and exit status 2; ``--json`` gives machine-readable output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

from bear.errors import BearError, ImportProblemError
from bear.io import read_ids_file
from bear.queries import bounds
from bear.selection import FILTERS, ID_FILTERS

DEFAULT_DB = "data/bear.duckdb"


def _default_db() -> str:
    return os.environ.get("BEAR_DB") or DEFAULT_DB


def _jsonable(v: Any) -> Any:
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, float) and v != v:
        return None
    if v is pd.NaT:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in df.to_dict(orient="records"):
        out.append(
            {
                k: (None if (not isinstance(v, list | tuple) and pd.isna(v)) else _jsonable(v))
                for k, v in row.items()
            }
        )
    return out


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=_jsonable))


def _print_frame(df: pd.DataFrame, as_json: bool) -> None:
    if as_json:
        _print_json(_records(df))
    elif df.empty:
        print("(none)")
    else:
        with pd.option_context(
            "display.max_rows",
            500,
            "display.max_columns",
            50,
            "display.width",
            200,
            "display.max_colwidth",
            80,
        ):
            print(df.to_string(index=False))


# -- argument helpers ------------------------------------------------------------------------
def _whole(name: str, lo: int, hi: int) -> Any:
    """An argparse ``type``: a whole number from ``lo`` to ``hi`` (``bounds.whole``)."""

    def parse(text: str) -> int:
        try:
            return bounds.whole(name, text, lo, hi, text=True)
        except BearError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help=f"database file (default $BEAR_DB or {DEFAULT_DB})")


def _add_filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selection (filters, or --ids-file)")
    g.add_argument("--company", type=int, action="append", help="company id (repeatable)")
    g.add_argument("--account", type=int, action="append", help="account id (repeatable)")
    g.add_argument("--project", type=int, action="append", help="project id (repeatable)")
    g.add_argument("--region", action="append")
    g.add_argument("--practice", action="append")
    g.add_argument("--group", dest="grp", action="append")
    g.add_argument("--currency", action="append")
    g.add_argument("--from", dest="date_from", help="event date from (YYYY-MM-DD)")
    g.add_argument("--to", dest="date_to", help="event date to (YYYY-MM-DD)")
    g.add_argument("--min-amount")
    g.add_argument("--max-amount")
    g.add_argument("--category", action="append", help="item category present in the event")
    g.add_argument("--search", help="free text (event, project or account name)")
    g.add_argument("--eligibility", help="eligible, ineligible, or a rule id")
    g.add_argument(
        "--ids-file",
        help="file of billing event ids (one per line, or CSV with an id column); `events` "
        "narrows its listing to them, the other commands take them instead of filters",
    )


_FILTER_KEYS = tuple(f for f in FILTERS if f not in ID_FILTERS)  # ids come from --ids-file


def _filters(a: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(a, k) for k in _FILTER_KEYS if getattr(a, k, None) not in (None, [])}


def _printable(text: str) -> str:
    """``text`` with control characters shown escaped (``\\x1b``), so a hostile file name or
    value cannot drive the terminal it is printed to."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _listed(ws: Any, a: argparse.Namespace) -> Any:
    """The selection ``bear events`` lists: its filters, and the ids of ``--ids-file``."""
    f = _filters(a)
    if getattr(a, "ids_file", None):
        f["ids"] = read_ids_file(a.ids_file)
    if a.awaiting == "invoice":
        return ws.awaiting_invoice(**f)
    return ws.events(**f) if a.awaiting == "any" else ws.awaiting_release(**f)


def _selection(ws: Any, a: argparse.Namespace, kind: str) -> Any:
    f = _filters(a)
    if getattr(a, "ids_file", None):
        if f:
            raise BearError("give either --ids-file or filters, not both")
        return read_ids_file(a.ids_file)
    return ws.awaiting_invoice(**f) if kind == "awaiting_invoice" else ws.awaiting_release(**f)


def _open(a: argparse.Namespace, *, resume: bool = False) -> Any:
    import bear

    return bear.connect(
        a.db or _default_db(), resume=resume, safe_mode=getattr(a, "safe_mode", False)
    )


# -- commands --------------------------------------------------------------------------------
def cmd_init(a: argparse.Namespace) -> int:
    with _open(a) as ws:
        n = ws.sql("SELECT count(*) AS n FROM schema_migrations")["n"][0]
        print(f"database {ws.path} ready ({n} migration(s) applied)")
    return 0


def cmd_seed(a: argparse.Namespace) -> int:
    import bear

    with _open(a) as ws:
        counts = bear.demo.seed(ws, events=a.events, seed=a.seed)
    if a.json:
        _print_json(counts)
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
    with _open(a) as ws:
        try:
            report = ws.import_files(dry_run=a.dry_run, **files)
        except ImportProblemError as exc:
            if a.json:
                _print_json({"ok": False, "error": str(exc), "problems": exc.problems})
            else:
                print(f"error: {exc}", file=sys.stderr)
                for p in exc.problems[:200]:
                    where = ", ".join(
                        [str(p["file"])]
                        + [f"{k} {p[k]}" for k in ("row", "column") if p.get(k) is not None]
                    )
                    print(f"  {_printable(where)}: {_printable(p['problem'])}", file=sys.stderr)
                if len(exc.problems) > 200:
                    print(f"  … and {len(exc.problems) - 200} more", file=sys.stderr)
            return 2
    if a.json:
        _print_json({"ok": True, **report})
    else:
        verb = "validated (dry run, nothing written)" if a.dry_run else "imported"
        print(f"{verb}: " + ", ".join(f"{k} {v:,}" for k, v in report["rows"].items()))
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    with _open(a) as ws:
        written = ws.export_files(a.out, fmt=a.format, raw=a.raw)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def cmd_settings(a: argparse.Namespace) -> int:
    with _open(a) as ws:
        if a.action == "list":
            rows = ws.settings.describe()
            if a.json:
                _print_json(rows)
            else:
                _print_frame(pd.DataFrame(rows)[["name", "value", "default", "allowed"]], False)
        elif a.action == "get":
            if not a.name:
                raise BearError("settings get: name the setting")
            from bear.config import SETTINGS

            if a.name[0] not in SETTINGS:
                raise BearError(
                    f"unknown setting {a.name[0]!r}; known settings: {', '.join(SETTINGS)}"
                )
            value = getattr(ws.settings, a.name[0])
            print(
                json.dumps(value)
                if a.json
                else (json.dumps(value) if isinstance(value, list) else value)
            )
        elif a.action == "reset":
            if not a.name:
                raise BearError("settings reset: name the settings to put back to their defaults")
            for k, v in ws.settings.reset(*a.name).items():
                print(f"{k} = {json.dumps(v)}")
        else:
            if not a.name:
                raise BearError("settings set: give NAME=VALUE pairs")
            values = {}
            for pair in a.name:
                if "=" not in pair:
                    raise BearError(f"settings set: {pair!r} is not NAME=VALUE")
                k, v = pair.split("=", 1)
                values[k.strip()] = v
            clean = ws.settings.update(**values)
            for k, v in clean.items():
                print(f"{k} = {json.dumps(v)}")
    return 0


def cmd_events(a: argparse.Namespace) -> int:
    with _open(a) as ws:
        sel = _listed(ws, a)
        sort = []
        for s in a.sort or []:
            col, _, d = s.partition(":")
            sort.append((col, d or "asc"))
        page = sel.page(a.offset, a.limit, sort=sort)
        if a.json:
            _print_json(
                {
                    "count": len(sel),
                    "offset": a.offset,
                    "events": _records(page),
                    "totals": _records(sel.totals()),
                }
            )
        else:
            _print_frame(
                page[
                    ["id", "name", "event_date", "account", "project", "currency", "summary_amount"]
                ],
                False,
            )
            print(f"\n{len(sel):,} matching; showing {len(page)} from {a.offset}")
    return 0


def cmd_preview(a: argparse.Namespace) -> int:
    action = a.action.replace("-", "_")
    with _open(a) as ws:
        sel = _selection(ws, a, "awaiting_invoice" if action == "invoice" else "awaiting_release")
        pv = ws.preview(sel, action=action, full=a.full)
        if a.json:
            _print_json(
                {
                    "action": pv.action,
                    "selected": pv.selected,
                    "validated": pv.validated,
                    "reason": pv.reason,
                    "eligible": pv.eligible,
                    "ineligible": pv.ineligible,
                    "seconds": round(pv.seconds, 3),
                    "expected_documents": _records(pv.expected_documents),
                    "by_rule": _records(pv.by_rule),
                    "blast_radius": len(pv.blast_radius),
                    "violations": _records(pv.violations.head(a.max_violations)),
                    "eligible_ids": pv.eligible_ids if a.with_ids else None,
                }
            )
            return 0
        print(
            f"{pv.action}: {pv.selected:,} selected, {pv.eligible:,} eligible"
            + (f", {pv.ineligible:,} ineligible" if pv.validated else f" — {pv.reason}")
        )
        if len(pv.expected_documents):
            print("\nExpected documents:")
            _print_frame(pv.expected_documents, False)
        if len(pv.by_rule):
            print("\nReasons:")
            _print_frame(pv.by_rule, False)
        if len(pv.blast_radius):
            print(
                f"\nBlast radius: {len(pv.blast_radius):,} releasable events share a batch with an unreleasable "
                "one (they would fail with it without validation)."
            )
    return 0


def _show_run(res: Any, as_json: bool) -> None:
    if as_json:
        _print_json({k: _jsonable(v) for k, v in res.__dict__.items()})
        return
    print(f"run {res.id} ({res.action}) by {res.requested_by}: {res.status} [{res.stage}]")
    print(f"  selected {res.selected:,}, left out up front {res.excluded:,}")
    print(f"  batches {res.batches_done:,}/{res.batches:,}, failed {res.failed_batches:,}")
    print(f"  released {res.released:,}, not released {res.not_released:,}")
    print(
        f"  sales invoices {res.sales_invoices:,}, credit notes {res.credit_notes:,}, "
        f"not passed to accounting {res.not_passed:,}"
    )
    if res.process_run_id is not None:
        print(f"  process run {res.process_run_id}")
    if res.error:
        print(f"  error: {res.error}")


def cmd_run(a: argparse.Namespace) -> int:
    if a.run_command in ("show", "cancel"):
        with _open(a) as ws:
            res = ws.run(a.run_id) if a.run_command == "show" else ws.cancel(a.run_id)
            _show_run(res, a.json)
        return 0
    action = a.run_command.replace("-", "_")
    # --no-wait only queues: this process must not start executing anything before it exits.
    with _open(a, resume=not a.no_wait) as ws:
        sel = _selection(ws, a, "awaiting_invoice" if action == "invoice" else "awaiting_release")
        handle = ws.queue(action, sel, a.user, full=a.full, start=not a.no_wait)
        run_id = handle.id
        if a.no_wait:
            # The run is queued in the database; `bear worker` (or any owner) executes it.
            if a.json:
                _print_json({"id": run_id, "status": "queued"})
            else:
                print(
                    f"run {run_id} queued; `bear worker --db {ws.path}` or the dashboard will execute it"
                )
            return 0
        res = handle.wait()
        # The e-mails are sent by this process's outbox thread: give them their first attempt
        # before the process exits (a failure stays in the outbox for the next owner).
        ws.wait_notifications(res.id, timeout=30)
        _show_run(res, a.json)
    return 0 if res.status == "completed" else 1


def cmd_runs(a: argparse.Namespace) -> int:
    with _open(a) as ws:
        df = ws.runs(limit=a.limit)
        cols = [
            "id",
            "action",
            "requested_by",
            "status",
            "released",
            "not_released",
            "sales_invoices",
            "credit_notes",
            "not_passed",
            "process_run_id",
            "created_at",
        ]
        _print_frame(df if a.json else df[cols], a.json)
    return 0


def cmd_plugins(a: argparse.Namespace) -> int:
    with _open(a) as ws:
        plugins, rules = ws.plugin_list(), ws.rules()
        if a.json:
            _print_json({"plugins": _records(plugins), "rules": _records(rules)})
        else:
            print("Plugins:")
            _print_frame(plugins, False)
            print("\nRules:")
            _print_frame(rules[["id", "stage", "severity", "plugin", "enabled"]], False)
    return 0


def cmd_worker(a: argparse.Namespace) -> int:
    import time

    with _open(a, resume=True) as ws:
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
    with _open(a) as ws:
        if a.action == "retry":
            res = ws.retry_notifications()
            print(f"sent {res['sent']}, still failing {res['failed']}")
            return 0 if res["failed"] == 0 else 1
        df = ws.notifications(run_id=a.run)
        cols = ["id", "run_id", "kind", "channel", "recipient", "status", "attempts", "last_error"]
        _print_frame(df if a.json else df[cols], a.json)
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from bear.ui.server import serve

    serve(
        a.db or _default_db(),
        port=a.port,
        address=a.address,
        user=a.user,
        show=False,
        startup={
            k: v
            for k, v in (("plugins_dir", a.plugins_dir), ("rules_file", a.rules_file))
            if v is not None
        },
        allow_hosts=a.allow_host or (),
        safe_mode=a.safe_mode,
    )
    return 0


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bear",
        description="BEAR — release billing events, create sales invoices and credit notes.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    p.add_argument(
        "--safe-mode",
        action="store_true",
        help="open the book without its plugins folder, rules file and entry-point plugins "
        "(to fix a setting that stops it from opening: bear --safe-mode settings reset NAME)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        _add_db(sp)
        sp.set_defaults(fn=fn)
        return sp

    cmd("init", cmd_init, "create or migrate a database")

    sp = cmd("seed", cmd_seed, "fill an empty database with deterministic demo data")
    sp.add_argument("--events", type=int, default=10_000)
    sp.add_argument("--seed", type=int, default=7)
    sp.add_argument("--json", action="store_true")

    from bear.io import KINDS

    sp = cmd("import", cmd_import, "import CSV or Parquet files, all or nothing")
    for kind in KINDS:
        sp.add_argument(
            f"--{kind.replace('_', '-')}", dest=kind, help=f"{kind} file (.csv or .parquet)"
        )
    sp.add_argument("--dry-run", action="store_true", help="validate only; write nothing")
    sp.add_argument("--json", action="store_true")

    sp = cmd("export", cmd_export, "export the book in the import shapes")
    sp.add_argument("--out", required=True, help="folder to write into (not an existing file)")
    sp.add_argument("--format", choices=["csv", "parquet"], default="csv")
    sp.add_argument(
        "--raw",
        action="store_true",
        help="write CSV text exactly as stored, for programs and round trips; by default text "
        "beginning with = + - @, a tab or a carriage return gets a ' before it, so a "
        "spreadsheet shows it instead of running it (such a file does not import back "
        "unchanged). Parquet is always exact",
    )

    sp = cmd("settings", cmd_settings, "list, get, set or reset settings")
    sp.add_argument("action", choices=["list", "get", "set", "reset"])
    sp.add_argument(
        "name", nargs="*", help="NAME for get; NAME=VALUE pairs for set; NAMEs for reset"
    )
    sp.add_argument("--json", action="store_true")

    sp = cmd("events", cmd_events, "list billing events (awaiting release unless --awaiting)")
    _add_filters(sp)
    sp.add_argument("--awaiting", choices=["release", "invoice", "any"], default="release")
    sp.add_argument("--offset", type=int, default=0)
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--sort", action="append", help="COLUMN[:asc|desc] (repeatable)")
    sp.add_argument("--json", action="store_true")

    sp = cmd("preview", cmd_preview, "what an action would do to a selection; writes nothing")
    _add_filters(sp)
    sp.add_argument(
        "--action",
        choices=["release-and-invoice", "release", "invoice"],
        default="release-and-invoice",
    )
    sp.add_argument("--full", action="store_true", help="validate even above validation_limit")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--with-ids", action="store_true", help="include eligible ids in --json output")
    sp.add_argument(
        "--max-violations", type=_whole("max_violations", 0, bounds.BIGINT_MAX), default=1000
    )

    sp = sub.add_parser(
        "run", help="start, show or cancel a run", description="start, show or cancel a run"
    )
    rsub = sp.add_subparsers(dest="run_command", required=True, metavar="ACTION")
    for name in ("release-and-invoice", "release", "invoice"):
        rp = rsub.add_parser(name, help=f"{name.replace('-', ' ')} a selection in the background")
        _add_db(rp)
        _add_filters(rp)
        rp.add_argument(
            "--user", required=True, help="who starts the run (an e-mail address gets the e-mail)"
        )
        rp.add_argument("--no-wait", action="store_true", help="queue the run and return")
        rp.add_argument("--full", action="store_true", help="validate even above validation_limit")
        rp.add_argument("--json", action="store_true")
        rp.set_defaults(fn=cmd_run)
    for name in ("show", "cancel"):
        rp = rsub.add_parser(name, help=f"{name} a run")
        _add_db(rp)
        rp.add_argument("run_id", type=int)
        rp.add_argument("--json", action="store_true")
        rp.set_defaults(fn=cmd_run)

    sp = cmd("runs", cmd_runs, "list runs, newest first")
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--json", action="store_true")

    sp = cmd("plugins", cmd_plugins, "list plugins and rules")
    sp.add_argument("--json", action="store_true")

    sp = cmd("worker", cmd_worker, "execute queued and unfinished runs without a dashboard")
    sp.add_argument("--once", action="store_true", help="stop when the queue is empty")

    sp = cmd("notifications", cmd_notifications, "list the notification outbox or retry deliveries")
    sp.add_argument("action", choices=["list", "retry"], nargs="?", default="list")
    sp.add_argument("--run", type=int)
    sp.add_argument("--json", action="store_true")

    sp = cmd("serve", cmd_serve, "serve the dashboard (owns the database and runs the runner)")
    sp.add_argument("--port", type=_whole("port", 1, 65_535), default=5006)
    sp.add_argument("--address", default="127.0.0.1")
    sp.add_argument(
        "--user", default=None, help="current user when authentication is off (else $BEAR_USER)"
    )
    sp.add_argument(
        "--plugins-dir", default=None, help="folder of .py plugins to load (stored as plugins_dir)"
    )
    sp.add_argument(
        "--rules-file", default=None, help="TOML rules file to load (stored as rules_file)"
    )
    sp.add_argument(
        "--allow-host",
        action="append",
        metavar="HOST[:PORT]",
        help="another Host name the server answers to, e.g. behind a proxy (repeatable)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(a.fn(a) or 0)
    except BearError as exc:
        print(f"error: {_printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
