"""Reading the book through the workspace: run records, logs, documents, notifications, and
counts, pages and totals of selections and listings (one pager for all), each a few lines over
``bear.queries``. ``Workspace`` inherits these; they use its database, core and settings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd
import pyarrow as pa

from bear import pipeline
from bear.db import Database
from bear.errors import BearError, NotFoundError
from bear.io import stream
from bear.models import Scopes
from bear.pipeline import Core
from bear.queries import bounds
from bear.queries import events as q_events
from bear.queries import overview as q_overview
from bear.queries import pager as q_pager
from bear.queries import records as q_records
from bear.queries.events import Condition
from bear.queries.pager import Listing, Pager
from bear.queries.records import AppLogQuery, DocumentQuery, ProcessLogQuery, ViolationQuery
from bear.selection import Selection

_READ_CACHE_SIZE = 16  # free-text matches kept per data version (a few per session)
Listable = Selection | DocumentQuery | ProcessLogQuery | AppLogQuery | ViolationQuery


class Reading:
    """The reading half of the front door (mixed into ``Workspace``)."""

    db: Database
    core: Core

    def runs(self, limit: int = 1000) -> pd.DataFrame:
        """Recent runs, newest first."""
        return q_records.runs(self.db.cursor(), bounds.whole("limit", limit, 0, bounds.BIGINT_MAX))

    def release_batches(self, run_id: int) -> pd.DataFrame:
        """The release batches of a run: seq, size, status, released, cause."""
        return q_records.release_batches(self.db.cursor(), bounds.id_("run_id", run_id))

    def process_runs(self, run_id: int | None = None) -> pd.DataFrame:
        """The process runs (invoicing stages) of a run, or of every run."""
        return q_records.process_runs(self.db.cursor(), bounds.optional_id("run_id", run_id))

    def process_logs(
        self, process_run_id: int, status: str | None = None, *, scope: Scopes | None = None
    ) -> pd.DataFrame:
        """One row per event the invoicing stage processed: status OK (with document) or ERROR.
        ``scope`` (a person's scopes) keeps the rows of the events they may see."""
        pr = bounds.id_("process_run_id", process_run_id)
        return self.export(ProcessLogQuery(pr, status, scope))

    def app_logs(
        self,
        run_id: int | None = None,
        limit: int | None = None,
        *,
        scope: Scopes | None = None,
    ) -> pd.DataFrame:
        """Release-stage problems and other background events, oldest first; with ``scope``,
        the run-level records and those of the events the person may see."""
        query = AppLogQuery(bounds.optional_id("run_id", run_id), scope)
        return self.export(query, limit=limit)

    def documents(
        self,
        run_id: int | None = None,
        limit: int | None = None,
        *,
        scope: Scopes | None = None,
    ) -> pd.DataFrame:
        """Sales invoices and credit notes (of one run, or all); with ``scope``, those of the
        events the person may see. Id columns that may be empty (``reverses_document_id``…)
        are pandas ``Int64``."""
        query = DocumentQuery(run_id=bounds.optional_id("run_id", run_id), scope=scope)
        if limit is not None:
            limit = bounds.whole("limit", limit, 0, bounds.BIGINT_MAX)
        listing = self._listing(query)
        return q_pager.export(self.db.cursor(), listing, limit, nullable_ints=True)

    def document_lines(self, document_id: int, *, scope: Scopes | None = None) -> pd.DataFrame:
        """The lines of one sales invoice or credit note, with product names. A document of
        an event outside ``scope`` is not found."""
        doc = bounds.id_("document_id", document_id)
        if not q_records.document_visible(self.db.cursor(), doc, scope):
            raise NotFoundError(f"no document {doc}")
        return q_records.document_lines(self.db.cursor(), doc)

    def notifications(self, run_id: int | None = None, channel: str | None = None) -> pd.DataFrame:
        """The notification outbox: what was owed, to whom, and whether it was delivered."""
        run = bounds.optional_id("run_id", run_id)
        return q_records.notifications(self.db.cursor(), run, channel)

    def inbox(self, user: str, after_id: int | None = None, limit: int = 50) -> pd.DataFrame:
        """A user's in-app notifications: the newest ``limit``, or every one newer than
        ``after_id`` (oldest first)."""
        after = (
            None if after_id is None else bounds.whole("after_id", after_id, 0, bounds.BIGINT_MAX)
        )
        n = bounds.whole("limit", limit, 0, bounds.PAGE_SIZE_MAX)
        return q_records.inbox(self.db.cursor(), user, after, n)

    def inbox_state(self, user: str) -> tuple[int, int]:
        """(newest in-app notification id or 0, unread count) of a user."""
        return q_records.inbox_state(self.db.cursor(), user)

    def mark_notifications_read(self, user: str, ids: Iterable[int] | None = None) -> int:
        """Mark a user's delivered in-app notifications read (all of them, or these ids)."""
        checked = None if ids is None else bounds.ids("ids", list(ids))
        with self.db.transaction() as tx:
            return q_records.mark_read(tx, user, checked)

    # -- reading: counts, pages, totals (one pager for every listing) ---------------------------
    def count(self, what: Listable, *, cached: bool = False) -> int:
        """How many rows ``what`` (a selection or a record query) has.

        ``cached=True`` (the dashboard) reuses what this data version already computed for
        costly filters — category masks, free-text matches; data written outside BEAR must
        then be announced with ``refresh()``."""
        cur = self.db.cursor()
        if isinstance(what, Selection):
            self._own(what)
            return q_events.count(cur, self._condition(what, cached=cached))
        return q_pager.count(cur, self._listing(what))

    def totals(
        self,
        sel: Selection,
        *,
        cached: bool = False,
        projects: str = "per_currency",
        ineligible: bool = False,
    ) -> pd.DataFrame:
        """Per currency: ``currency, events, amount, sales_invoices, credit_notes`` (amount in
        Decimal) and ``projects``, the distinct projects of the currency; with
        ``projects="overall"``, ``all_projects`` instead: the distinct projects of every
        currency together. ``ineligible=True`` adds column ``ineligible``: the events the
        kind's rules block, counted in the same pass (computes the kind's eligibility if it is
        not kept yet)."""
        self._own(sel)
        elig = sel.filters.eligibility
        if cached and sel.filters.dimensional(categories=True):
            return self._kept_totals(sel, projects, ineligible)
        cond = self._condition(sel, cached=cached)
        flagged = None
        if ineligible and not elig:
            flagged = Condition(*self._eligibility_condition(sel.kind, "ineligible"))
        out = q_events.totals(self.db.cursor(), cond, projects=projects, flagged=flagged)
        if flagged is not None:
            out = out.rename(columns={"flagged": "ineligible"})
        elif ineligible:  # the filter says it already: none, or every one of them
            out["ineligible"] = 0 if elig == "eligible" else out["events"]
        return out

    def _kept_totals(self, sel: Selection, projects: str, ineligible: bool) -> pd.DataFrame:
        """``totals`` of a dimensional selection, summed from the kind's per-project aggregate
        kept for this data version (milliseconds at a million events, where the events' scan
        takes ~60)."""
        kind = sel.kind
        verdict = ("awaiting_release" if kind == "all" else kind, self.core.data_version)
        # one aggregate per kind: with the flag once the kind's eligibility is kept
        flag = ineligible or bool(sel.filters.eligibility) or verdict in self.core.eligibility_cache

        agg = self._aggregate(kind, flag, by_mask=bool(sel.filters.category))
        out = q_events.aggregate_totals(agg, sel.filters, projects=projects, flagged=ineligible)
        return out.rename(columns={"flagged": "ineligible"})

    def _aggregate(self, kind: str, flag: bool, *, by_mask: bool) -> Any:
        """The kind's aggregate for this data version (``queries.events.aggregate``): with the
        ineligible flag or not, per item-category mask (the category filter's) or not."""

        def build() -> Any:
            flagged = Condition(*self._eligibility_condition(kind, "ineligible")) if flag else None
            masks = None
            if by_mask:
                masks = self._cached(("masks",), lambda: q_events.category_masks(self.db.cursor()))
            return q_events.aggregate(self.db.cursor(), kind, flagged, masks)

        return self._cached(("aggregate", kind, flag, by_mask), build)

    def overview(self, sel: Selection, *, cached: bool = False) -> dict[str, pd.DataFrame]:
        """A selection at a glance (Decimal amounts, per currency): ``age`` (bucket by days
        since the event date), ``customers`` (the ten accounts with most events, then the
        rest), ``currency``, and ``reasons`` (events per blocking rule; computes the kind's
        eligibility if it is not cached yet)."""
        self._own(sel)
        cond = self._condition(sel, cached=cached)
        cur = self.db.cursor()
        kind = "awaiting_release" if sel.kind == "all" else sel.kind
        rules = pipeline.eligibility_table(self.core, kind)[1]
        return {
            "age": q_overview.by_age(cur, cond),
            "customers": q_overview.by_customer(cur, cond),
            "currency": q_overview.by_currency(cur, cond),
            "reasons": q_overview.by_reason(cur, cond, rules),
        }

    def page(
        self,
        what: Listable,
        offset: int = 0,
        limit: int = 50,
        sort: Sequence[tuple[str, str]] | None = None,
    ) -> pd.DataFrame:
        """Rows ``offset`` … ``offset+limit`` of a selection (every column of
        ``bear.selection.COLUMNS``, sorted by whitelisted ``(column, "asc"|"desc")`` pairs, ties
        broken by id) or of a record query."""
        return q_pager.to_pandas(self.page_table(what, offset, limit, sort), nullable_ints=True)

    def page_table(
        self,
        what: Listable,
        offset: int = 0,
        limit: int = 50,
        sort: Sequence[tuple[str, str]] | None = None,
    ) -> pa.Table:
        """``page``'s rows as an Arrow table (what the HTTP API sends)."""
        offset = bounds.whole("offset", offset, 0, bounds.BIGINT_MAX, label="page offset")
        limit = bounds.whole("limit", limit, 1, bounds.PAGE_SIZE_MAX, label="page limit")
        listing = self._listing(what, sort=sort)
        return q_pager.window_table(self.db.cursor(), listing, offset, limit)

    def browse(
        self,
        what: Listable,
        pager: Pager,
        page: int,
        *,
        sort: Sequence[tuple[str, str]] | None = None,
        columns: Sequence[str] | None = None,
        cached: bool = False,
    ) -> pd.DataFrame:
        """Page ``page`` of ``what`` for a screen that keeps its place in ``pager`` (set
        ``pager.total`` first): one page forward or back moves by keyset, not OFFSET."""
        page = bounds.whole("page", page, 0, bounds.BIGINT_MAX)
        listing = self._listing(what, sort=sort, columns=columns, cached=cached)
        return pager.load(self.db.cursor(), listing, page)

    def export(
        self,
        what: Listable,
        *,
        sort: Sequence[tuple[str, str]] | None = None,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Every row of ``what`` in order (or the first ``limit``), Decimal kept."""
        if limit is not None:
            limit = bounds.whole("limit", limit, 0, bounds.BIGINT_MAX)
        listing = self._listing(what, sort=sort, columns=columns)
        return q_pager.export(self.db.cursor(), listing, limit)

    def export_stream(
        self,
        what: Listable,
        fmt: str = "csv",
        *,
        sort: Sequence[tuple[str, str]] | None = None,
        columns: Sequence[str] | None = None,
        raw: bool = False,
    ) -> Iterator[bytes]:
        """Every row of ``what`` in order as ``csv`` or ``xlsx`` bytes, chunk by chunk from SQL
        (at most one batch of rows in memory; Excel: at most ``EXCEL_MAX_ROWS`` rows).
        Formula-like text is neutralised unless ``raw``. The query runs before this returns,
        so a bad one raises here; the chunks use a cursor of their own, closed at the end."""
        listing = self._listing(what, sort=sort, columns=columns)
        cur = self.db.con.cursor()
        try:
            listing.register(cur)
            out = stream.chunks(cur, listing.export_sql(), listing.params, fmt, raw=raw)
        except BaseException:
            cur.close()
            raise

        def closing() -> Iterator[bytes]:
            try:
                yield from out
            finally:
                cur.close()

        return closing()

    def filter_options(self) -> dict[str, Any]:
        """Choices for the filter widgets (labels → values), eligibility rules included.
        Read once per data version (each new dashboard session asks for them); each caller
        gets its own copy."""
        key = ("filter_options", self.core.data_version)  # a change meanwhile: a stale key
        options = self.core.kept.get(key)
        if options is None:
            rules = self.rules()
            block = {
                str(r.id): str(r.description) for r in rules.itertuples() if r.severity == "block"
            }
            options = self.core.kept[key] = q_events.filter_options(self.db.cursor(), block)
        return {k: v.copy() for k, v in options.items()}

    def selection_where(self, sel: Selection) -> tuple[str, dict[str, Any]]:
        """A selection's SQL condition (over aliases e, p, a, c) and its parameters."""
        self._own(sel)
        cond = self._condition(sel)
        return cond.where, dict(cond.params)

    def selection_sql(self, sel: Selection) -> tuple[str, dict[str, Any]]:
        """A query returning a selection's ids (column ``billing_event_id``), and its
        parameters, for this thread's cursor."""
        self._own(sel)
        return q_events.ids_sql(self._condition(sel))

    def _own(self, sel: Selection) -> None:
        if sel.ws is not None and sel.ws is not self:
            raise BearError("the selection belongs to another workspace")

    def _listing(
        self,
        what: Listable,
        *,
        sort: Sequence[tuple[str, str]] | None = None,
        columns: Sequence[str] | None = None,
        cached: bool = False,
    ) -> Listing:
        if isinstance(what, Selection):
            self._own(what)
            return q_events.listing(self._condition(what, cached=cached), columns, sort)
        if isinstance(what, DocumentQuery):
            col, desc = (sort or [("id", "asc")])[0]
            return q_records.document_listing(what, col, str(desc).lower() == "desc", columns)
        if isinstance(what, ProcessLogQuery):
            return q_records.process_log_listing(what)
        if isinstance(what, AppLogQuery):
            return q_records.app_log_listing(what)
        if isinstance(what, ViolationQuery):
            return q_records.violation_listing(what)
        raise BearError(f"cannot list {what!r}")

    def _condition(self, sel: Selection, *, cached: bool = False) -> Condition:
        """The SQL condition of a selection. The eligibility filter needs the preview's
        verdicts: they are resolved here and handed down as a condition of their own.

        With ``cached``, the item-category filter is answered from per-event category masks
        and free-text matches are found once per filter and data version."""
        f = sel.filters
        rest = replace(f, eligibility=None)
        if cached and f.category:
            masks = self._cached(("masks",), lambda: q_events.category_masks(self.db.cursor()))
            chosen = self._cached(
                ("category", tuple(sorted(f.category))),
                lambda: q_events.mask_condition(
                    f.category, masks, f"_bear_masks_{self.data_version}"
                ),
            )
            cond = q_events.condition(sel.kind, replace(rest, category=())).and_(chosen)
        else:
            cond = q_events.condition(sel.kind, rest)
        if cached and f.search:
            base = cond
            name = f"_bear_match_{abs(hash((sel.kind, rest))):x}"
            matches = self._cached(
                ("matches", sel.kind, rest),
                lambda: q_events.in_ids(q_events.match_ids(self.db.cursor(), base), name),
            )
            cond = Condition(q_events.KIND_SQL[sel.kind]).and_(matches)
        if f.eligibility:
            where, params = self._eligibility_condition(sel.kind, f.eligibility)
            cond = cond.and_(Condition(where, params))
        return cond

    def warm(self) -> None:
        """Compute now what a dashboard's first page and filters read, kept until the data
        changes: the eligibility of every awaiting event (seconds at a million) and the
        events' item-category masks (the category filter's), and the per-project aggregates
        the grid's totals are summed from."""
        pipeline.eligibility_table(self.core, "awaiting_release")
        self._cached(("masks",), lambda: q_events.category_masks(self.db.cursor()))
        for by_mask in (False, True):
            self._aggregate("awaiting_release", True, by_mask=by_mask)

    def _cached(self, key: tuple[Any, ...], compute: Any) -> Any:
        version = self.data_version
        with self._read_lock:
            hit = self._read_cache.get(key)
            if hit is not None and hit[0] == version:
                return hit[1]
        value = compute()
        with self._read_lock:
            if len(self._read_cache) >= _READ_CACHE_SIZE:
                self._read_cache.pop(next(iter(self._read_cache)))
            self._read_cache[key] = (version, value)
        return value
