"""``RemoteWorkspace``: the Python API of a book served by ``bear serve``, over its HTTP API.

The same methods, arguments and return types as the local ``bear.Workspace`` (DESIGN §4,
§7): selections are plain ``bear.selection.Selection`` values bound to this workspace,
tables come back as the same DataFrames (Arrow IPC on the wire: ``Decimal`` money, integer
ids), previews as ``Preview`` and runs as ``RunResult``. Each call is one request to a route
of ``bear.api``, which runs the same ``Workspace`` method on the server; what a caller may do
is decided there, by the role and scopes of the token's user, and every run or change is
recorded as made by that user (a ``user`` argument is accepted for compatibility and not
sent). Errors arrive as the ``BearError`` subclass the server raised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any, Literal, overload

import pandas as pd

from bear.errors import BearError
from bear.models import Action, Preview, RunResult
from bear.pipeline.ids import action_of
from bear.pipeline.runs import check_reason
from bear.queries import bounds
from bear.remote.http import Http
from bear.remote.runs import RemoteRunHandle
from bear.remote.settings import RemoteSettings
from bear.selection import Filters, Kind, Selection
from bear.wire import jsonable, preview_from_arrow, run_of

log = logging.getLogger(__name__)

Ids = Selection | Iterable[int]


class RemoteWorkspace:
    """A book served by ``bear serve`` at ``url``. Get one with
    ``bear.connect("http://host:5006", token=...)``; close it when done."""

    def __init__(
        self, url: str, token: str | None = None, *, timeout: float = 300.0, **http: Any
    ) -> None:
        self.url = self.path = url
        self._http = Http(url, token, timeout=timeout, **http)
        try:
            self.user: str = self.me()["name"]  # fails now on a bad token or a wrong URL
        except BaseException:
            self._http.close()
            raise
        self.settings = RemoteSettings(self._http)

    # -- life cycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection to the server (the served book stays open there)."""
        self._http.close()

    def __enter__(self) -> RemoteWorkspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<bear.RemoteWorkspace {self.url!r} as {self.user!r}>"

    def me(self) -> dict[str, Any]:
        """Who the server says you are: ``name``, ``role``, ``email``, ``scopes``,
        ``single_user`` (a book without users: everyone acts as its owner)."""
        me: dict[str, Any] = self._http.json("GET", "/me")
        return me

    def sql(self, query: str, **params: Any) -> pd.DataFrame:
        """Run one read-only, sandboxed SQL statement on the server (``$name`` parameters)."""
        body = {"query": query, "params": jsonable(params)}
        return self._http.table("POST", "/sql", json=body)

    def import_files(
        self, *, dry_run: bool = False, actor: str | None = None, **files: str | os.PathLike[str]
    ) -> dict[str, Any]:
        """Upload CSV or Parquet files (a path per kind) and import them on the server, all or
        nothing (admin). The server records the token's user as the author (``actor`` is
        accepted for the local signature and ignored)."""
        return self._http.upload("/imports", files, params={"dry_run": dry_run})

    def export_files(
        self, out_dir: str | os.PathLike[str], fmt: str = "csv", *, raw: bool = False
    ) -> dict[str, Path]:
        """Write every kind's rows to ``out_dir/<kind>.<fmt>`` on this machine, as the server
        exported them; returns the path written per kind."""
        import io
        import zipfile

        response = self._http.request(
            "GET", "/exports", params={"fmt": fmt, "raw": raw}, accept="application/zip"
        )
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise BearError(f"cannot export into {str(out)!r}: it is a file, not a folder")
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        with zipfile.ZipFile(io.BytesIO(response.content)) as z:
            for name in z.namelist():
                target = out / Path(name).name  # never a path the archive chooses
                target.write_bytes(z.read(name))
                written[Path(name).stem] = target
        return written

    def retry_notifications(self) -> dict[str, int]:
        """Ask the server to deliver every pending notification now (analyst)."""
        return self._http.json("POST", "/notifications/retry")

    # -- selections --------------------------------------------------------------------------
    def awaiting_release(self, **filters: Any) -> Selection:
        """Events not yet released, filtered (see ``bear.selection.FILTERS``)."""
        return Selection("awaiting_release", Filters.build(**filters), self)

    def awaiting_invoice(self, **filters: Any) -> Selection:
        """Released events without a document yet, filtered."""
        return Selection("awaiting_invoice", Filters.build(**filters), self)

    def released(self, **filters: Any) -> Selection:
        """Released events, invoiced or not (what a revert can take back), filtered."""
        return Selection("released", Filters.build(**filters), self)

    def invoiced(self, **filters: Any) -> Selection:
        """Events with a sales invoice or credit note, filtered."""
        return Selection("invoiced", Filters.build(**filters), self)

    def events(self, **filters: Any) -> Selection:
        """All billing events, filtered."""
        return Selection("all", Filters.build(**filters), self)

    def selection(self, kind: Kind, filters: Filters | None = None) -> Selection:
        """A selection of ``kind`` with already validated ``filters``, bound to this workspace."""
        return Selection(kind, Filters() if filters is None else filters, self)

    def count(self, what: Selection, *, cached: bool = False) -> int:
        """How many events a selection holds."""
        return int(self._http.json("POST", "/events/count", json=self._which(what))["count"])

    def resolve_ids(self, what: Selection) -> list[int]:
        """The ids of a selection's events, in id order."""
        frame = self._http.table("POST", "/events/ids", json=self._which(what))
        return [int(i) for i in frame["id"]]

    def page(
        self,
        what: Selection,
        offset: int = 0,
        limit: int = 50,
        sort: Sequence[tuple[str, str]] | None = None,
    ) -> pd.DataFrame:
        """Rows ``offset`` … ``offset+limit`` of a selection, sorted by whitelisted
        ``(column, "asc"|"desc")`` pairs (ties broken by id)."""
        offset = bounds.whole("offset", offset, 0, bounds.BIGINT_MAX, label="page offset")
        limit = bounds.whole("limit", limit, 1, bounds.PAGE_SIZE_MAX, label="page limit")
        body = {**self._which(what), "offset": offset, "limit": limit}
        if sort:
            body["sort"] = [[str(col), str(direction)] for col, direction in sort]
        return self._http.table("POST", "/events/page", json=body, nullable_ints=True)

    def totals(self, sel: Selection, *, cached: bool = False) -> pd.DataFrame:
        """Per currency: ``currency, events, amount, sales_invoices, credit_notes, projects``."""
        return self._http.table("POST", "/events/totals", json=self._which(sel))

    def selection_where(self, sel: Selection) -> tuple[str, dict[str, Any]]:
        raise BearError("a selection's SQL stays on the server: read it with page() or ids()")

    selection_sql = selection_where

    def _which(self, what: Selection) -> dict[str, Any]:
        if not isinstance(what, Selection):
            raise BearError(f"expected a selection of this workspace, not {type(what).__name__}")
        if what.ws is not None and what.ws is not self:
            raise BearError("the selection belongs to another workspace")
        return {"kind": what.kind, "filters": jsonable(what.filters.as_dict())}

    def _events(self, ids_or_selection: Ids) -> dict[str, Any]:
        """The request body naming these events: a selection's kind and filters, or ids."""
        if isinstance(ids_or_selection, Selection):
            return self._which(ids_or_selection)
        if isinstance(ids_or_selection, str | bytes):
            raise BearError("give a list of billing event ids or a selection, not text")
        values = ids_or_selection
        listed = values.tolist() if hasattr(values, "tolist") else list(values)
        return {"ids": jsonable(listed)}

    def filter_options(self) -> dict[str, Any]:
        """Choices for the filter widgets (labels → values), eligibility rules included."""
        options: dict[str, Any] = self._http.json("GET", "/filter-options")
        return options

    # -- rules and preview -------------------------------------------------------------------
    def rules(self) -> pd.DataFrame:
        """Every registered rule: id, stage, severity, description, plugin, enabled, last timing."""
        return self._http.table("GET", "/rules")

    def plugin_list(self) -> pd.DataFrame:
        """Every plugin the server loaded: name, version, source, hooks."""
        return self._http.table("GET", "/plugins")

    def preview(
        self,
        ids_or_selection: Ids,
        action: str | Action = "release_and_invoice",
        full: bool = False,
    ) -> Preview:
        """What ``action`` would do to these events (eligible ids, violations, expected
        documents, blast radius); writes nothing."""
        body = {**self._events(ids_or_selection), "action": action_of(action).value, "full": full}
        return preview_from_arrow(self._http.arrow("POST", "/preview", json=body))

    # -- runs --------------------------------------------------------------------------------
    def queue(
        self,
        action: str | Action,
        ids_or_selection: Ids,
        user: str | None = None,
        *,
        full: bool = False,
        start: bool = True,
        reason: str | None = None,
    ) -> RemoteRunHandle:
        """Queue a run on the server and return its handle at once (``.id``, ``.result()``,
        ``.wait()``). The server records the signed-in user as its author and executes it
        (``user`` and ``start`` are accepted for compatibility with the local workspace). A
        ``revert`` needs a ``reason``."""
        act = action_of(action)
        body = {**self._events(ids_or_selection), "action": act.value, "full": full}
        if reason is not None or act is Action.REVERT:
            body["reason"] = check_reason(reason) if act is Action.REVERT else reason
        queued = self._http.json("POST", "/runs", json=body)
        return RemoteRunHandle(self._http, int(queued["id"]))

    def _start(
        self, action: str, ids_or_selection: Ids, wait: bool, full: bool, timeout: float | None
    ) -> RunResult | RemoteRunHandle:
        handle = self.queue(action, ids_or_selection, full=full)
        return handle.wait(timeout) if wait else handle

    @overload
    def release_and_invoice(
        self,
        ids_or_selection: Ids,
        user: str | None = ...,
        *,
        wait: Literal[True] = ...,
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RunResult: ...

    @overload
    def release_and_invoice(
        self,
        ids_or_selection: Ids,
        user: str | None = ...,
        *,
        wait: Literal[False],
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RemoteRunHandle: ...

    def release_and_invoice(
        self,
        ids_or_selection: Ids,
        user: str | None = None,
        *,
        wait: bool = True,
        full: bool = False,
        timeout: float | None = None,
    ) -> RunResult | RemoteRunHandle:
        """Release the events in batches, then create their sales invoices and credit notes.
        ``wait=True`` returns the finished ``RunResult``; ``wait=False`` a handle."""
        return self._start("release_and_invoice", ids_or_selection, wait, full, timeout)

    @overload
    def release(
        self,
        ids_or_selection: Ids,
        user: str | None = ...,
        *,
        wait: Literal[True] = ...,
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RunResult: ...

    @overload
    def release(
        self,
        ids_or_selection: Ids,
        user: str | None = ...,
        *,
        wait: Literal[False],
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RemoteRunHandle: ...

    def release(
        self,
        ids_or_selection: Ids,
        user: str | None = None,
        *,
        wait: bool = True,
        full: bool = False,
        timeout: float | None = None,
    ) -> RunResult | RemoteRunHandle:
        """Release the events in batches (no documents)."""
        return self._start("release", ids_or_selection, wait, full, timeout)

    @overload
    def invoice(
        self,
        ids_or_selection: Ids,
        user: str | None = ...,
        *,
        wait: Literal[True] = ...,
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RunResult: ...

    @overload
    def invoice(
        self,
        ids_or_selection: Ids,
        user: str | None = ...,
        *,
        wait: Literal[False],
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RemoteRunHandle: ...

    def invoice(
        self,
        ids_or_selection: Ids,
        user: str | None = None,
        *,
        wait: bool = True,
        full: bool = False,
        timeout: float | None = None,
    ) -> RunResult | RemoteRunHandle:
        """Create sales invoices and credit notes for released events."""
        return self._start("invoice", ids_or_selection, wait, full, timeout)

    def revert(
        self,
        ids_or_selection: Ids,
        *,
        reason: str,
        user: str | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> RunResult | RemoteRunHandle:
        """Revert the release or invoice of these events as a run on the server (analyst);
        ``reason`` is required. The token's user is recorded as its author."""
        handle = self.queue("revert", ids_or_selection, reason=reason)
        return handle.wait(timeout) if wait else handle

    def post(
        self, document_ids_or_run_id: Iterable[int] | int, *, user: str | None = None
    ) -> pd.DataFrame:
        """Post documents to accounting (in progress → complete): document ids, or a run id
        (an ``int``). All or nothing. Returns the documents posted."""
        if isinstance(document_ids_or_run_id, Integral):  # int or a NumPy integer, as locally
            body: dict[str, Any] = {"run_id": bounds.id_("run_id", document_ids_or_run_id)}
        else:
            if isinstance(document_ids_or_run_id, str | bytes):
                raise BearError("post: give a list of document ids, not text")
            values = document_ids_or_run_id
            listed = values.tolist() if hasattr(values, "tolist") else list(values)
            body = {"document_ids": jsonable(listed)}
        return self._http.table("POST", "/documents/post", json=body)

    def history(self, billing_event_id: int) -> pd.DataFrame:
        """One event's releases, invoices and reverts in order, with their documents."""
        event = bounds.id_("billing_event_id", billing_event_id)
        return self._http.table("GET", f"/events/{event}/history", nullable_ints=True)

    def run(self, run_id: int) -> RunResult:
        """The ``RunResult`` of a run."""
        return run_of(self._http.json("GET", f"/runs/{bounds.id_('run_id', run_id)}"))

    def cancel(self, run_id: int) -> RunResult:
        """Ask a run to stop at its next batch boundary."""
        return run_of(self._http.json("POST", f"/runs/{bounds.id_('run_id', run_id)}/cancel"))

    # -- reading what happened ---------------------------------------------------------------
    def runs(self, limit: int = 1000) -> pd.DataFrame:
        """Recent runs, newest first."""
        return self._http.table("GET", "/runs", params={"limit": limit})

    def release_batches(self, run_id: int) -> pd.DataFrame:
        """The release batches of a run: seq, size, status, released, cause."""
        return self._http.table("GET", f"/runs/{bounds.id_('run_id', run_id)}/batches")

    def process_runs(self, run_id: int | None = None) -> pd.DataFrame:
        """The process runs (invoicing stages) of a run, or of every run."""
        run = bounds.optional_id("run_id", run_id)
        return self._http.table("GET", "/process-runs", params={"run_id": run})

    def process_logs(self, process_run_id: int, status: str | None = None) -> pd.DataFrame:
        """One row per event the invoicing stage processed: status OK (with document) or ERROR."""
        pid = bounds.id_("process_run_id", process_run_id)
        return self._http.table("GET", f"/process-runs/{pid}/logs", params={"status": status})

    def app_logs(self, run_id: int | None = None, limit: int | None = None) -> pd.DataFrame:
        """Release-stage problems and other background events, oldest first."""
        run = bounds.optional_id("run_id", run_id)
        return self._http.table("GET", "/app-logs", params={"run_id": run, "limit": limit})

    def documents(self, run_id: int | None = None, limit: int | None = None) -> pd.DataFrame:
        """Sales invoices and credit notes (of one run, or all)."""
        run = bounds.optional_id("run_id", run_id)
        return self._http.table(
            "GET", "/documents", params={"run_id": run, "limit": limit}, nullable_ints=True
        )

    def document_lines(self, document_id: int) -> pd.DataFrame:
        """The lines of one sales invoice or credit note, with product names."""
        doc = bounds.id_("document_id", document_id)
        return self._http.table("GET", f"/documents/{doc}/lines")

    def notifications(self, run_id: int | None = None, channel: str | None = None) -> pd.DataFrame:
        """The notification outbox: what was owed, to whom, and whether it was delivered."""
        run = bounds.optional_id("run_id", run_id)
        return self._http.table("GET", "/notifications", params={"run_id": run, "channel": channel})
