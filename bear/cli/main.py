"""The parser of ``bear`` and its entry point."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from bear.cli.commands import (
    REASONS_SHOWN,
    cmd_events,
    cmd_export,
    cmd_history,
    cmd_import,
    cmd_init,
    cmd_notifications,
    cmd_plugins,
    cmd_post,
    cmd_preview,
    cmd_run,
    cmd_runs,
    cmd_seed,
    cmd_serve,
    cmd_settings,
    cmd_worker,
)
from bear.cli.common import (
    add_db,
    add_filters,
    add_server,
    error_object,
    print_json,
    printable,
    whole,
)
from bear.cli.login import add_login_parsers
from bear.cli.team import add_team_parsers
from bear.errors import BearError
from bear.queries import bounds

log = logging.getLogger("bear.cli")

ERRORS = """errors:
  An error is one line on stderr, "error: …", and exit status 2 (1 for an unexpected failure,
  whose traceback `bear -v` logs). With --json, an error is instead one JSON object on stdout,
  {"error": "<message>", "type": "<class, e.g. DatabaseLockedError>", …its details}, with the
  same exit status; warnings (e.g. a plugin that failed to load) stay on stderr."""


class Parser(argparse.ArgumentParser):
    """``argparse`` whose usage errors honour ``--json`` (a JSON object on stdout, exit 2)."""

    json_errors = False  # set by ``main`` when the command line holds --json

    def error(self, message: str) -> NoReturn:
        if Parser.json_errors:
            print_json({"error": f"{self.prog}: {message}", "type": "UsageError"})
            sys.exit(2)
        super().error(message)


# Commands that run until stopped keep a log with times; the others print "warning: …" lines.
LONG_RUNNING = ("serve", "worker")


class PlainFormatter(logging.Formatter):
    """Log records as a person reads them on a terminal: ``warning: …`` (without -v)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {printable(record.getMessage())}"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="bear",
        description="BEAR — release billing events, create sales invoices and credit notes.",
        epilog=ERRORS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    p.add_argument(
        "--safe-mode",
        action="store_true",
        help="open the book without its plugins folder, rules file and entry-point plugins "
        "(to fix a setting that stops it from opening: bear --safe-mode settings reset NAME)",
    )
    add_server(p, main=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        add_db(sp)
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

    sp = cmd(
        "settings",
        cmd_settings,
        "list, get, set or reset settings, or show who changed them (history)",
    )
    sp.add_argument("action", choices=["list", "get", "set", "reset", "history"])
    sp.add_argument(
        "name",
        nargs="*",
        help="NAME for get; NAME=VALUE pairs for set; NAMEs for reset; an optional NAME for "
        "history. set and reset are recorded as made by local:<your OS user> (with --server: "
        "by the token's user)",
    )
    sp.add_argument(
        "--limit",
        type=whole("limit", 0, bounds.BIGINT_MAX),
        default=None,
        help="history: only the newest LIMIT changes",
    )
    sp.add_argument("--json", action="store_true")

    add_team_parsers(sub)
    add_login_parsers(sub)

    sp = cmd("events", cmd_events, "list billing events (awaiting release unless --awaiting)")
    add_filters(sp)
    sp.add_argument("--awaiting", choices=["release", "invoice", "any"], default="release")
    sp.add_argument("--offset", type=int, default=0)
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--sort", action="append", help="COLUMN[:asc|desc] (repeatable)")
    sp.add_argument("--json", action="store_true")

    sp = cmd("preview", cmd_preview, "what an action would do to a selection; writes nothing")
    add_filters(sp)
    sp.add_argument(
        "--action",
        choices=["release-and-invoice", "release", "invoice"],
        default="release-and-invoice",
    )
    sp.add_argument("--full", action="store_true", help="validate even above validation_limit")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--with-ids", action="store_true", help="include eligible ids in --json output")
    sp.add_argument(
        "--max-violations", type=whole("max_violations", 0, bounds.BIGINT_MAX), default=1000
    )
    sp.add_argument(
        "--reasons",
        nargs="?",
        const=REASONS_SHOWN,
        default=None,
        type=whole("reasons", 1, bounds.BIGINT_MAX),
        metavar="N",
        help=f"list each violation: event id, rule id, severity and message (the first N, "
        f"default {REASONS_SHOWN}, then '… and M more'); with --json as \"reasons\"",
    )

    sp = sub.add_parser(
        "run", help="start, show or cancel a run", description="start, show or cancel a run"
    )
    rsub = sp.add_subparsers(dest="run_command", required=True, metavar="ACTION")
    for name in ("release-and-invoice", "release", "invoice", "revert"):
        rp = rsub.add_parser(
            name,
            help="revert the release or invoice of released events in the background"
            if name == "revert"
            else f"{name.replace('-', ' ')} a selection in the background",
        )
        add_db(rp)
        add_filters(rp)
        if name == "revert":
            rp.add_argument(
                "--reason", required=True, help="why the events are reverted (required)"
            )
        rp.add_argument(
            "--user",
            help="who starts the run (an e-mail address gets the e-mail); required for a "
            "book file, ignored with --server (the token's user starts it)",
        )
        rp.add_argument("--no-wait", action="store_true", help="queue the run and return")
        rp.add_argument("--full", action="store_true", help="validate even above validation_limit")
        rp.add_argument("--json", action="store_true")
        rp.set_defaults(fn=cmd_run)
    for name in ("show", "cancel"):
        rp = rsub.add_parser(name, help=f"{name} a run")
        add_db(rp)
        rp.add_argument("run_id", type=int)
        rp.add_argument("--json", action="store_true")
        rp.set_defaults(fn=cmd_run)

    sp = cmd("post", cmd_post, "post documents to accounting (in progress -> complete)")
    sp.add_argument("document_ids", nargs="*", type=int, metavar="DOCUMENT_ID")
    sp.add_argument("--run", type=int, help="post every document in progress of this run")
    sp.add_argument("--user", help="who posts (recorded on the documents); default: local")
    sp.add_argument("--json", action="store_true")

    sp = cmd("history", cmd_history, "one billing event's releases, invoices and reverts")
    sp.add_argument("billing_event_id", type=int)
    sp.add_argument("--json", action="store_true")

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
    sp.add_argument("--port", type=whole("port", 1, 65_535), default=5006)
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
    args = list(sys.argv[1:] if argv is None else argv)
    Parser.json_errors = "--json" in args
    parser = build_parser()
    a = parser.parse_args(args)
    handler = logging.StreamHandler()
    if a.verbose or a.command in LONG_RUNNING:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(PlainFormatter())
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, handlers=[handler])
    as_json = bool(getattr(a, "json", False))
    try:
        return int(a.fn(a) or 0)
    except BearError as exc:
        _error(exc, as_json)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a defect, not the user's input: no traceback unless -v
        log.debug("unexpected failure", exc_info=True)
        _error(exc, as_json, unexpected=True)
        return 1


def _error(exc: BaseException, as_json: bool, *, unexpected: bool = False) -> None:
    """Say what went wrong: one line on stderr, or the JSON object on stdout (``--json``)."""
    obj = error_object(exc)
    if unexpected:
        obj["error"] = f"unexpected {type(exc).__name__}: {obj['error']} (run with -v to see where)"
    if as_json:
        print_json(obj)
    else:
        print(f"error: {printable(obj['error'])}", file=sys.stderr)
