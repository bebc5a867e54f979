"""What every command shares: the book to open, filters and ids, printing tables and JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import getpass
import json
import logging
import os
from typing import Any

import pandas as pd

from bear.errors import BearError
from bear.io import read_ids_file
from bear.queries import bounds
from bear.selection import FILTERS, ID_FILTERS

DEFAULT_DB = "data/bear.duckdb"

log = logging.getLogger("bear.cli")


def default_db() -> str:
    return os.environ.get("BEAR_DB") or DEFAULT_DB


def local_actor() -> str:
    """Who a change made with this machine's ``bear`` is recorded as: ``local:<OS user>``."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no $LOGNAME / $USER and no password entry for the uid
        name = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return "local:" + (printable(name.strip())[:100] or "unknown")


def jsonable(v: Any) -> Any:
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


MISSING = "—"  # how a table printed for a person shows a missing value


def whole_ids(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its id columns (``id``, ``…_id``) as integers: a column of ids with a gap
    comes out of pandas as floats (``2.0``, ``NaN``); it is pandas ``Int64`` here."""
    out = df
    for col in df.columns:
        name, column = str(col), df[col]
        if (name == "id" or name.endswith("_id")) and column.dtype.kind == "f":
            present = column.dropna()
            if bool((present == present.round()).all()):
                out = out.assign(**{name: column.astype("Int64")})
    return out


def for_people(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as a table on a terminal shows it: ids as integers, a missing value (``NaN``,
    ``None``, ``NaT``) as ``MISSING``."""
    out = whole_ids(df)
    for col in out.columns:
        column = out[col]
        if not isinstance(column, pd.Series):
            continue  # a repeated column name: left as it is
        if pd.api.types.is_datetime64_any_dtype(column):
            # the book keeps UTC: to the second, zone named
            column = column.dt.strftime("%Y-%m-%d %H:%M:%S UTC")
            out = out.assign(**{str(col): column})
        gaps = column.isna()
        if bool(gaps.any()):
            out = out.assign(**{str(col): column.astype(object).where(~gaps, MISSING)})
    return out


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in whole_ids(df).to_dict(orient="records"):
        out.append(
            {
                k: (None if (not isinstance(v, list | tuple) and pd.isna(v)) else jsonable(v))
                for k, v in row.items()
            }
        )
    return out


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=jsonable))


def _plain_value(value: Any) -> Any:
    """``value`` as JSON can hold it (its text when it cannot)."""
    try:
        return json.loads(json.dumps(value, default=jsonable))
    except (TypeError, ValueError):
        return str(value)


def error_object(exc: BaseException) -> dict[str, Any]:
    """An error as ``--json`` prints it: ``error`` (the message), ``type`` (the exception's
    class, e.g. ``DatabaseLockedError``) and the details it carries (``pid``, ``name``, …)."""
    obj: dict[str, Any] = {"error": str(exc), "type": type(exc).__name__}
    for key, value in vars(exc).items():
        if not key.startswith("_") and key not in obj:
            obj[key] = _plain_value(value)
    return obj


def print_frame(df: pd.DataFrame, as_json: bool) -> None:
    if as_json:
        print_json(records(df))
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
            print(for_people(df).to_string(index=False))


# -- argument helpers ------------------------------------------------------------------------
def whole(name: str, lo: int, hi: int) -> Any:
    """An argparse ``type``: a whole number from ``lo`` to ``hi`` (``bounds.whole``)."""

    def parse(text: str) -> int:
        try:
            return bounds.whole(name, text, lo, hi, text=True)
        except BearError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help=f"database file (default $BEAR_DB or {DEFAULT_DB})")
    add_server(p)


def add_server(p: argparse.ArgumentParser, *, main: bool = False) -> None:
    """``--server`` and ``--token``: before the command (``main``), or after it (then they
    are only set when given, so they never hide the ones given before it)."""
    default: Any = None if main else argparse.SUPPRESS
    p.add_argument(
        "--server",
        metavar="URL",
        default=default,
        help="work on the book served at URL (bear serve) through its API instead of a file "
        "(default $BEAR_SERVER)",
    )
    p.add_argument(
        "--token",
        default=default,
        help="API token for --server (default $BEAR_TOKEN, else the one bear login stored)",
    )


def add_filters(p: argparse.ArgumentParser) -> None:
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


def filters_of(a: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(a, k) for k in _FILTER_KEYS if getattr(a, k, None) not in (None, [])}


# The filters whose values the book lists (``ws.filter_options()``), by the name a person
# gives them: a value the book does not hold matches nothing, which a warning says.
LISTED_FILTERS = {
    "company": "company",
    "account": "account",
    "project": "project",
    "region": "region",
    "practice": "practice",
    "grp": "group",
    "currency": "currency",
}
KNOWN_SHOWN = 12  # known values a warning names before "… (N in all)"


def unknown_filter_values(filters: dict[str, Any], options: dict[str, Any]) -> list[str]:
    """A warning for each value of ``filters`` that ``options`` (``ws.filter_options()``)
    does not know: ``currency XYZ is not in this book (known: EUR, GBP, USD)``."""
    warnings = []
    for key, label in LISTED_FILTERS.items():
        given = filters.get(key)
        if given is None or key not in options:
            continue
        known = options[key]
        values = list(known.values()) if isinstance(known, dict) else list(known)
        names = ", ".join(str(v) for v in values[:KNOWN_SHOWN])
        if len(values) > KNOWN_SHOWN:
            names += f", … ({len(values):,} in all)"
        for value in given if isinstance(given, list | tuple) else [given]:
            if value not in values:
                warnings.append(f"{label} {value} is not in this book (known: {names or 'none'})")
    return warnings


def warn_unknown_filters(ws: Any, filters: dict[str, Any]) -> None:
    """Say on stderr (a logged warning, so ``--json`` output stays valid) which filter values
    name something the book does not hold; asks the book only when such a filter is given."""
    if not any(k in filters for k in LISTED_FILTERS):
        return
    for warning in unknown_filter_values(filters, ws.filter_options()):
        log.warning("%s", warning)


def printable(text: str) -> str:
    """``text`` with control characters shown escaped (``\\x1b``), so a hostile file name or
    value cannot drive the terminal it is printed to."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def listed(ws: Any, a: argparse.Namespace) -> Any:
    """The selection ``bear events`` lists: its filters, and the ids of ``--ids-file``."""
    f = filters_of(a)
    warn_unknown_filters(ws, f)
    if getattr(a, "ids_file", None):
        f["ids"] = read_ids_file(a.ids_file)
    if a.awaiting == "invoice":
        return ws.awaiting_invoice(**f)
    return ws.events(**f) if a.awaiting == "any" else ws.awaiting_release(**f)


def selection_of(ws: Any, a: argparse.Namespace, kind: str) -> Any:
    f = filters_of(a)
    if getattr(a, "ids_file", None):
        if f:
            raise BearError("give either --ids-file or filters, not both")
        return read_ids_file(a.ids_file)
    warn_unknown_filters(ws, f)
    if kind == "released":
        return ws.released(**f)
    return ws.awaiting_invoice(**f) if kind == "awaiting_invoice" else ws.awaiting_release(**f)


def server_of(a: argparse.Namespace) -> str | None:
    """The server a command goes through: ``--server``, else ``$BEAR_SERVER`` unless ``--db``
    names a file (an option given beats the environment); ``None`` for a local book."""
    server = getattr(a, "server", None)
    if server:
        if getattr(a, "db", None):
            raise BearError("give either --server or --db, not both")
        return str(server)
    if getattr(a, "db", None):
        return None
    return os.environ.get("BEAR_SERVER", "").strip() or None


def local_only(a: argparse.Namespace, command: str, why: str = "") -> None:
    """Refuse ``command`` when it would go through a server: it needs the file itself."""
    server = server_of(a)
    if server:
        raise BearError(
            f"bear {command} works on the database file itself, not through a server "
            f"({server}){': ' + why if why else ''}. Run it on the machine that holds the "
            "book, with --db (and without --server or $BEAR_SERVER)"
        )


def is_remote(ws: Any) -> bool:
    from bear.remote import RemoteWorkspace

    return isinstance(ws, RemoteWorkspace)


def open_book(a: argparse.Namespace, *, resume: bool = False) -> Any:
    """The book a command works on: the server's (``server_of``), through the remote
    workspace, or the file of ``--db`` / ``$BEAR_DB``."""
    import bear

    server = server_of(a)
    if server:
        if getattr(a, "safe_mode", False):
            raise BearError(
                "--safe-mode opens a file, not a server (start one with bear --safe-mode serve)"
            )
        from bear.errors import AuthError
        from bear.remote import connect

        try:
            return connect(server, getattr(a, "token", None))
        except AuthError as exc:
            raise AuthError(
                f"{exc} — sign in to {server} once with `bear login --server {server}`, or "
                "give --token or $BEAR_TOKEN"
            ) from None
    if getattr(a, "token", None):
        raise BearError("--token goes with --server URL (a database file needs no token)")
    return bear.connect(
        a.db or default_db(), resume=resume, safe_mode=getattr(a, "safe_mode", False)
    )
