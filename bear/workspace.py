"""The Workspace: the one object the Python API, the CLI and the dashboard call.

It owns the database (one process at a time), the settings, the plugin manager and the
rule registry, and the background runner that executes release and invoicing runs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import duckdb
import numpy as np
import pandas as pd

from bear import pipeline
from bear.auth import Team
from bear.config import Settings
from bear.db import Database, item_stats, open_database, saved_views
from bear.errors import BearError, NotFoundError, PluginError
from bear.io import ImportReport
from bear.io import export_files as _export_files
from bear.io import import_files as _import_files
from bear.models import Action, Preview, RunResult, Scopes
from bear.pipeline import Core, IdQuery, IdSource, Outbox, RunHandle, Runner
from bear.plugins.manager import PluginHost
from bear.queries import adhoc, bounds
from bear.queries import events as q_events
from bear.queries import ids as q_ids
from bear.queries import records as q_records
from bear.reading import Reading
from bear.selection import Filters, Kind, Selection

log = logging.getLogger(__name__)


class Workspace(Reading):
    """An open BEAR database. Use ``bear.connect(path)`` to get one; close it when done."""

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        plugins: Iterable[object] | Mapping[str, object] = (),
        *,
        resume: bool = True,
        safe_mode: bool = False,
    ) -> None:
        self.path = str(path)
        self.safe_mode = safe_mode
        self.db: Database = open_database(self.path)
        self._extra_plugins = plugins if isinstance(plugins, Mapping) else list(plugins)
        # per data version: category masks, ids matching costly filters (dashboard reads)
        self._read_cache: dict[Any, Any] = {}
        self._read_lock = threading.Lock()
        try:
            self.settings = Settings(self.db)
            self.team = Team(self.db)
            self.plugins = self._plugin_host(safe_mode)
            self.settings.add_validator(self.plugins.check_settings)
            self.settings.add_listener(self._settings_changed)
            # The stages get these collaborators, never the workspace itself.
            self.core = Core(self.db, self.settings, self.plugins)
            self.runner = self.core.runner = Runner(self.core)
            self.outbox = self.core.outbox = Outbox(self.core)
            pipeline.clear_stale_claims(self.core)
            if resume and not safe_mode:  # runs resume with the book's own plugins only
                self.runner.resume()
                self.outbox.resume()
        except BaseException:
            self.db.close()
            raise

    def _plugin_host(self, safe_mode: bool) -> PluginHost:
        """The plugins and rules of this book; a stored setting that stops them from loading
        is named, with the way back in (safe mode)."""
        try:
            return PluginHost(self.db, self.settings, self._extra_plugins, safe_mode=safe_mode)
        except PluginError as exc:
            name = exc.setting
            if name is None:
                raise
            value = getattr(self.settings, name)
            exc.args = (
                f"{exc}\nThe book's setting {name} = {value!r} stops it from opening. Open it "
                f"in safe mode to fix it: `bear --safe-mode settings reset {name}` (or "
                f"`bear --safe-mode settings set {name}=…`; in Python "
                "`bear.connect(path, safe_mode=True)`).",
            )
            raise

    @property
    def data_version(self) -> int:
        """Moves whenever data or rule settings change (readers drop what they cached)."""
        return self.core.data_version

    # -- life cycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the runner (at a batch boundary) and close the database."""
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.stop()
        outbox = getattr(self, "outbox", None)
        if outbox is not None:
            outbox.stop()
        self.db.close()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (every read or write then raises ``BearError``)."""
        return bool(self.db.closed)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<bear.Workspace {self.path!r}>"

    def refresh(self) -> None:
        """Note that data changed (import, seed, run): cached eligibility is recomputed on demand."""
        self.core.refresh()

    def refresh_item_stats(self, ids: Iterable[int] | None = None) -> None:
        """Recompute the item aggregates rules read (``billing_event_item_stats``) after items
        were written outside BEAR — all of them, or those of the events ``ids``. BEAR's own
        writers (seed, import, ``bear.testing``) keep them current themselves."""
        with self.db.transaction() as tx:
            if ids is None:
                item_stats.refresh(tx)
            else:
                wanted = self.resolve_ids(ids)  # unknown or malformed ids raise, naming them
                tx.execute(
                    "CREATE OR REPLACE TEMP TABLE _stat_in AS SELECT unnest($ids::BIGINT[]) AS id",
                    {"ids": wanted},
                )
                item_stats.refresh(tx, "SELECT id FROM _stat_in")
                tx.execute("DROP TABLE _stat_in")
        self.refresh()

    def _settings_changed(self, changed: dict[str, Any]) -> None:
        # Rules read settings when they are registered: rebuild the registry (validated before
        # the write by PluginHost.check_settings), then drop cached eligibility.
        if self.settings.affects_rules(changed):
            self.plugins.reload(changed)
        self.refresh()

    # -- low-level reading -------------------------------------------------------------------
    def _query(self, sql: str, params: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
        return self.db.cursor().execute(sql, params or {})

    def _frame(
        self, sql: str, params: dict[str, Any] | None = None, *, nullable_ints: bool = False
    ) -> pd.DataFrame:
        """A query's result as a DataFrame, DECIMAL kept as ``Decimal``; with ``nullable_ints``
        integer columns stay integers where values are missing (pandas ``Int64``)."""
        return self.core.frame(sql, params, nullable_ints=nullable_ints)

    def sql(self, query: str, **params: Any) -> pd.DataFrame:
        """Run one read-only SQL statement (SELECT, EXPLAIN SELECT) with ``$name`` parameters.

        The statement is sandboxed (``bear.queries.adhoc``): it may read the book's tables and
        views only, never a file, a setting or a sequence, and whatever it does is rolled back.
        """
        return adhoc.run_read_only(self.db.cursor(), query, params).to_pandas()

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

    def resolve_ids(self, ids_or_selection: Selection | Sequence[int] | Iterable[int]) -> list[int]:
        """Sorted, distinct ids of a selection or id list; unknown ids raise, naming them."""
        if isinstance(ids_or_selection, Selection):
            self._own(ids_or_selection)
            cur = self.db.cursor()
            return q_events.ids(cur, self._condition(ids_or_selection))
        return self.resolve_id_array(ids_or_selection).tolist()

    def _source(self, ids_or_selection: Selection | Iterable[int]) -> IdSource:
        """What the stages take: a selection's id query, or an id list checked against the book."""
        if isinstance(ids_or_selection, Selection):
            sql, params = self.selection_sql(ids_or_selection)
            whole = ids_or_selection.kind if ids_or_selection.filters == Filters() else None
            return IdQuery(sql, params, whole)
        return self.resolve_id_array(ids_or_selection)

    def resolve_id_array(self, ids: Sequence[int] | Iterable[int]) -> np.ndarray:
        """Sorted, distinct ids of an id list as an int64 array; unknown ids raise, naming them."""
        return q_ids.resolve_id_array(self.db.cursor(), ids)

    # -- rules and preview -------------------------------------------------------------------
    def rules(self) -> pd.DataFrame:
        """Every registered rule: id, stage, severity, description, plugin, enabled, last timing."""
        return self.plugins.rules_frame()

    def plugin_list(self) -> pd.DataFrame:
        """Every loaded plugin: name, version, source, hooks."""
        return self.plugins.plugins_frame()

    def preview(
        self,
        ids_or_selection: Selection | Iterable[int],
        action: str | Action = "release_and_invoice",
        full: bool = False,
    ) -> Preview:
        """What ``action`` would do to these events: eligible ids, violations, expected documents,
        blast radius. Writes nothing."""
        return pipeline.preview(self.core, self._source(ids_or_selection), action, full)

    def eligibility(self, kind: str = "awaiting_release") -> pd.DataFrame:
        """Blocking reasons of every ineligible event of ``kind`` (cached until data changes)."""
        return pipeline.eligibility_table(self.core, kind)[0].to_pandas()

    def blocked_reasons(
        self, ids: Iterable[int], kind: str = "awaiting_release"
    ) -> dict[int, tuple[str, int]]:
        """{event id: (first blocking reason, number of reasons)} for the events among ``ids``
        that the rules of ``kind`` block — a lookup in the kept eligibility (computed first if
        it is not kept), as a grid's page shows it."""
        return pipeline.blocked_reasons(self.core, kind, bounds.ids("ids", list(ids)))

    # -- runs --------------------------------------------------------------------------------
    def queue(
        self,
        action: str | Action,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        *,
        full: bool = False,
        start: bool = True,
        reason: str | None = None,
    ) -> RunHandle:
        """Queue a run and return its handle at once (``.id``, ``.result()``, ``.wait()``).

        ``start=False`` only records it: this process's runner is not woken, and whichever
        process owns the book next (``bear worker``, the dashboard) executes it. A ``revert``
        needs a ``reason``."""
        if pipeline.action_of(action) is Action.REVERT:
            pipeline.check_reason(reason)  # before the ids: a missing reason is named first
        run_id = pipeline.submit(
            self.core,
            action,
            self._source(ids_or_selection),
            user,
            full=full,
            wake=start,
            reason=reason,
        )
        return RunHandle(self.core, run_id)

    def _start(
        self,
        action: str,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        wait: bool,
        full: bool,
        timeout: float | None,
    ) -> RunResult | RunHandle:
        handle = self.queue(action, ids_or_selection, user, full=full)
        return handle.wait(timeout) if wait else handle

    @overload
    def release_and_invoice(
        self,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        *,
        wait: Literal[True] = ...,
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RunResult: ...

    @overload
    def release_and_invoice(
        self,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        *,
        wait: Literal[False],
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RunHandle: ...

    def release_and_invoice(
        self,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        *,
        wait: bool = True,
        full: bool = False,
        timeout: float | None = None,
    ) -> RunResult | RunHandle:
        """Release the events in batches, then create their sales invoices and credit notes.

        ``wait=True`` returns the finished ``RunResult``; ``wait=False`` a ``RunHandle`` with
        ``.id`` and ``.wait(timeout)``."""
        return self._start("release_and_invoice", ids_or_selection, user, wait, full, timeout)

    @overload
    def release(
        self,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        *,
        wait: Literal[True] = ...,
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RunResult: ...

    @overload
    def release(
        self,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        *,
        wait: Literal[False],
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RunHandle: ...

    def release(
        self,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        *,
        wait: bool = True,
        full: bool = False,
        timeout: float | None = None,
    ) -> RunResult | RunHandle:
        """Release the events in batches (no documents)."""
        return self._start("release", ids_or_selection, user, wait, full, timeout)

    @overload
    def invoice(
        self,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        *,
        wait: Literal[True] = ...,
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RunResult: ...

    @overload
    def invoice(
        self,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        *,
        wait: Literal[False],
        full: bool = ...,
        timeout: float | None = ...,
    ) -> RunHandle: ...

    def invoice(
        self,
        ids_or_selection: Selection | Iterable[int],
        user: str,
        *,
        wait: bool = True,
        full: bool = False,
        timeout: float | None = None,
    ) -> RunResult | RunHandle:
        """Create sales invoices and credit notes for released events."""
        return self._start("invoice", ids_or_selection, user, wait, full, timeout)

    def revert(
        self,
        ids_or_selection: Selection | Iterable[int],
        *,
        reason: str,
        user: str,
        wait: bool = True,
        timeout: float | None = None,
    ) -> RunResult | RunHandle:
        """Revert the release or invoice of these events (DESIGN §8), as a run: each goes back
        to Awaiting Release; a document in progress is discarded, a complete one reversed by
        an opposite document. ``reason`` is required (at most 500 characters). ``wait=True``
        returns the finished ``RunResult`` (``reverted``, ``discarded``, ``not_reverted``, the
        reversing documents in ``sales_invoices`` / ``credit_notes``); ``wait=False`` a handle."""
        handle = self.queue("revert", ids_or_selection, user, reason=reason)
        return handle.wait(timeout) if wait else handle

    def post(
        self, document_ids_or_run_id: Iterable[int] | int, *, user: str = "local"
    ) -> pd.DataFrame:
        """Post documents to accounting (``in_progress`` → ``complete``): a list of document
        ids, or a run id (an ``int``: every document in progress that run created). All or
        nothing; a document not in progress, or unknown, is named in the error. Returns the
        documents posted (id, number, doc_type, billing_event_id, status, posted_at, posted_by)."""
        if isinstance(document_ids_or_run_id, int | np.integer):
            return pipeline.post_documents(self.core, run_id=int(document_ids_or_run_id), user=user)
        return pipeline.post_documents(self.core, document_ids_or_run_id, user=user)

    # -- saved views ---------------------------------------------------------------------------
    def save_view(
        self,
        name: str,
        kind: str,
        filters: dict[str, Any],
        *,
        user: str,
        sort: tuple[str, str] = ("id", "asc"),
    ) -> None:
        """Save ``user``'s named view of a grid (``awaiting_release``, ``awaiting_invoice`` or
        ``invoiced``): its filters (validated as a selection's) and sort column and direction.
        A name ``user`` already has is replaced."""
        built = Filters.build(**filters)  # a bad filter is named before anything is stored
        column, direction = sort
        q_events.sort_keys([(column, direction)])
        saved_views.save(
            self.db, user, name, kind, built.as_dict(), column, str(direction).lower() == "desc"
        )

    def saved_views(self, *, user: str) -> pd.DataFrame:
        """``user``'s saved views by name: name, kind, filters (a dict), sort_by, descending."""
        return saved_views.listed(self.db, user)

    def delete_view(self, name: str, *, user: str) -> None:
        """Forget ``user``'s saved view ``name``."""
        saved_views.delete(self.db, user, name)

    def history(self, billing_event_id: int, *, scope: Scopes | None = None) -> pd.DataFrame:
        """The chain of one event, oldest first: every release, invoice and revert with its
        run, who, when, reason, the document before and after, and the reversing document.
        An event outside ``scope`` (a person's scopes) is not found."""
        event = bounds.id_("billing_event_id", billing_event_id)
        if not q_records.event_visible(self.db.cursor(), event, scope):
            raise NotFoundError(f"no billing event {event}")
        return q_records.history(self.db.cursor(), event)

    def cancel(self, run_id: int) -> RunResult:
        """Ask a run to stop at its next batch boundary."""
        return pipeline.cancel(self.core, bounds.id_("run_id", run_id))

    def run(self, run_id: int) -> RunResult:
        """The ``RunResult`` of a run."""
        return pipeline.read_run(self.db.cursor(), bounds.id_("run_id", run_id))

    def eligibility_ready(self, kind: str = "awaiting_release") -> bool:
        """True when the eligibility of every event of ``kind`` is computed for the current data
        (so ``eligibility(kind)`` and the eligibility filter answer at once)."""
        return (kind, self.core.data_version) in self.core.eligibility_cache

    def retry_notifications(self) -> dict[str, int]:
        """Deliver every pending notification now, whatever its backoff: ``{"sent", "failed",
        "left"}``. Bounded: no new attempt starts after ``RETRY_BUDGET_S`` (20 s), and each
        attempt is abandoned after 10 s; what is left stays pending for the outbox thread."""
        return self.outbox.sweep(force=True, budget_s=pipeline.outbox.RETRY_BUDGET_S)

    def wait_notifications(self, run_id: int | None = None, timeout: float = 30.0) -> bool:
        """Wait until each notification owed (by run ``run_id``, or by any run) has had a
        delivery attempt — e.g. before a script that ran something exits. True if so within
        ``timeout`` seconds; a failed attempt counts (it stays pending, to be retried)."""
        return self.outbox.settle(bounds.optional_id("run_id", run_id), timeout)

    def send_test_notification(self, recipient: str, channel: str = "email") -> str:
        """Send a test message through notification ``channel`` (a notifier plugin implementing
        ``bear_send_test_notification``) with the current settings; returns what was sent, or
        raises ``BearError`` saying why nothing was."""
        recipient = (recipient or "").strip() if isinstance(recipient, str) else recipient
        if not isinstance(recipient, str) or not recipient:
            raise BearError("give the address to send the test message to")
        return self.plugins.send_test(channel, self.settings.snapshot(), recipient)

    # -- import and export ------------------------------------------------------------------
    def import_files(
        self, *, dry_run: bool = False, actor: str = "local", **files: str | os.PathLike[str]
    ) -> ImportReport:
        """Import CSV or Parquet files (by extension), all or nothing, in one transaction.

        :param dry_run: validate only; write nothing.
        :param files: a path per kind (``bear.io.KINDS``: ``companies=``,
            ``company_currencies=``, ``accounting_periods=``, ``accounts=``, ``products=``,
            ``projects=``, ``events=``, ``items=``).
        :returns: ``{"rows": {kind: rows in its file}, "dry_run": dry_run}``.
        :raises ImportProblemError: when any file has any problem; ``problems`` lists each as
            ``{file, row, column, problem}`` (``row`` is the 1-based data row, ``None`` for the
            file) and nothing is written.

        An import that wrote rows is recorded in the change log (``ws.team.changes("import")``)
        with ``actor`` (who imported) and the rows per kind.
        """
        report = _import_files(self.db, dry_run=dry_run, after_write=self.refresh, **files)
        if not dry_run:
            with self.db.transaction(rule_neutral=True) as tx:
                self.team.log(
                    tx,
                    actor,
                    "import",
                    ", ".join(sorted(files)),
                    None,
                    {"rows": report["rows"], "files": {k: str(v) for k, v in files.items()}},
                )
        return report

    def export_files(
        self, out_dir: str | os.PathLike[str], fmt: str = "csv", *, raw: bool = False
    ) -> dict[str, Path]:
        """Write every import kind's rows to ``out_dir/<kind>.<fmt>`` (``csv`` or ``parquet``)
        in the import shapes, from one consistent snapshot; returns the path written per kind.

        A CSV is safe to open in a spreadsheet: text beginning with ``=``, ``+``, ``-``, ``@``,
        a tab or a carriage return gets a ``'`` before it. ``raw=True`` writes text exactly as
        stored (for programs and round trips); Parquet is always exact."""
        return _export_files(self.db, out_dir, fmt, raw=raw)

    def dashboard(self, view: str = "runs", **kwargs: Any) -> Any:
        """The dashboard's views inline in a notebook, e.g. ``ws.dashboard("run", run_id=3)``;
        a short-hand for ``bear.ui.notebook.dashboard(ws, view, **kwargs)``."""
        # A deliberate exception to the layer contract (the workspace never imports a face):
        # the import is lazy, so the core loads without panel, and it keeps the documented
        # notebook call working. The real entry point is bear.ui.notebook.dashboard.
        from bear.ui.notebook import dashboard

        return dashboard(self, view, **kwargs)

    def _eligibility_condition(self, kind: str, eligibility: str) -> tuple[str, dict[str, Any]]:
        return pipeline.eligibility_condition(self.core, kind, eligibility)
