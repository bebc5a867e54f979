"""The Release and Invoice dialog: the confirmation, the warning with every ineligible
event and reason (paged by the flow's one pager, downloadable), the validation-skipped notice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import panel as pn
from panel.viewable import Viewer

from bear.ui.components import (
    PagerBar,
    alert,
    dialog,
    esc,
    fmt_num,
    html_pane,
    set_frame,
    table,
)
from bear.ui.state import (
    ACTION_LABEL,
    ActionFlow,
)
from bear.ui.views.common import button

if TYPE_CHECKING:
    from bear.models import Preview


class ActionDialog(Viewer):
    """Confirmation, warning (ineligible events with reasons), validation-skipped notice."""

    def __init__(
        self,
        flow: ActionFlow,
        on_started: Callable[[int], None],
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.flow = flow
        self._on_started = on_started
        self.body = pn.Column(sizing_mode="stretch_width", min_height=120)
        self.modal = dialog(self.body, width=900, background_close=False)
        self.violations = table(
            height=300,
            # long reasons wrap inside their column instead of running off the dialog
            layout="fit_columns",
            widths={
                "billing_event_id": 80,
                "name": 110,
                "stage": 80,
                "rule_id": 200,
                "severity": 80,
            },
            stylesheets=[
                ".tabulator-row .tabulator-cell[tabulator-field='message'] "
                "{ white-space: normal !important; overflow-wrap: anywhere; }"
            ],
            titles={
                "billing_event_id": "Event",
                "name": "Name",
                "stage": "Stage",
                "rule_id": "Rule",
                "severity": "Severity",
                "message": "Reason",
            },
        )
        self.download = pn.widgets.FileDownload(
            callback=flow.violations_csv,
            filename="ineligible-events.csv",
            label="Download CSV",
            color="light",
            width=160,
        )
        # one row per event and reason: the pager counts rows, as the table shows them
        self.vpager = PagerBar(flow.violations, noun="reasons")
        # a revert says why (kept on the run, in every event's history and in the e-mail)
        self.reason = pn.widgets.TextAreaInput(
            label="Reason (required; kept in each event's history)",
            placeholder="Why are these events reverted? e.g. wrong hours on the March invoices",
            max_length=500,
            height=80,
            sizing_mode="stretch_width",
        )
        self.reason.param.watch(lambda e: setattr(flow, "reason", e.new or ""), "value_input")
        self.reason_error = html_pane()
        self.modal.param.watch(self._closed, "open")
        flow.param.watch(self._render, ["phase", "preview"])
        flow.param.watch(self._message, "message")
        flow.violations.param.watch(self._page, "rows")

    def show(self, action: str, preview_only: bool = False) -> None:
        self.body.objects = [self._working(action)]
        self.modal.open = True
        self.flow.open(action, preview_only=preview_only)

    def _closed(self, event: Any) -> None:
        if not event.new and self.flow.phase not in ("idle", "started"):
            self.flow.close()

    def _working(self, action: str) -> pn.viewable.Viewable:
        n = self.flow.grid.selected_count
        return pn.Row(
            pn.indicators.LoadingSpinner(value=True, size=28, label=""),
            html_pane(
                f"<div class='bear-line'>Checking {n:,} selected events against the rules for "
                f"<b>{esc(ACTION_LABEL[action])}</b>…</div>"
            ),
        )

    def _page(self, *_: Any) -> None:
        set_frame(self.violations, self.flow.violations.rows)

    def _message(self, event: Any) -> None:
        # while a dialog is open, the flow's message is a problem with the reason
        shown = self.flow.phase not in ("idle", "started", "error", "working")
        self.reason_error.object = alert(event.new, "err") if event.new and shown else ""

    def _buttons(self, *buttons: pn.widgets.Button) -> pn.Row:
        close = button("Cancel", "light", width=100)
        close.on_click(lambda e: self._close())
        row = pn.Row(*buttons, close, margin=(10, 0, 0, 0))
        if self.flow.action != "revert" or not buttons:
            return row
        self.reason.value = self.reason.value_input = self.flow.reason
        self.reason_error.object = ""
        return pn.Column(self.reason, self.reason_error, row, sizing_mode="stretch_width")

    def _close(self) -> None:
        self.modal.open = False
        self.flow.close()

    def _continuebutton(self, label: str) -> pn.widgets.Button:
        b = button(label, "primary")
        b.on_click(self._proceed)
        return b

    def _proceed(self, event: Any) -> None:
        run_id = self.flow.proceed()
        if run_id is not None:
            self.modal.open = False
            self._on_started(run_id)

    def _docs_html(self) -> str:
        if self.flow.action == "release":
            return (
                "<p class='bear-muted'>Release creates no documents: the released events wait "
                "on the Awaiting Invoice tab.</p>"
            )
        docs = self.flow.expected_documents()
        if not len(docs):
            return "<p class='bear-muted'>No documents would be created.</p>"
        revert = self.flow.action == "revert"
        rows = "".join(
            f"<tr><td>{esc(_doc_label(r.doc_type, getattr(r, 'effect', 'create'), revert))}</td>"
            f"<td>{esc(r.currency)}</td><td class='n'>{int(r.count):,}</td>"
            f"<td class='n'>{fmt_num(r.total, 2)}</td></tr>"
            for r in docs.itertuples()
        )
        return (
            "<table class='bear-kv'><tr><th>Expected</th><th>Currency</th><th>Count</th><th>Total</th></tr>"
            f"{rows}</table>"
        )

    def _violations_block(self) -> list[Any]:
        self._page()
        return [self.violations, pn.Row(self.vpager, pn.Spacer(), self.download)]

    def _render(self, *_: Any) -> None:
        f, pv = self.flow, self.flow.preview
        label = esc(f.label)
        phase = f.phase
        if phase in ("idle", "started"):
            return
        if phase == "working":
            self.body.objects = [self._working(f.action)]
            return
        head = html_pane(f"<h3 style='margin:4px 0'>{label}</h3>")
        if phase == "error" or pv is None:
            close = button("Close", "primary")
            close.on_click(lambda e: self._close())
            self.body.objects = [
                head,
                html_pane(alert(f.message or "Something went wrong.", "err")),
                close,
            ]
            return
        intro = (
            f"{pv.selected:,} events selected · {pv.eligible:,} eligible · "
            f"{pv.ineligible:,} ineligible · checked in {pv.seconds:.2f} s"
        )
        objs: list[Any] = [head, html_pane(f"<p class='bear-line'>{esc(intro)}</p>")]
        if phase == "unvalidated":
            validate = button("Validate all", "default")
            validate.on_click(lambda e: f.validate_all())
            objs += [
                html_pane(
                    alert(
                        f"Validation was skipped: {pv.selected:,} events is more than the validation "
                        f"limit of {f.ws.settings.validation_limit:,} events. The rules still run in "
                        "the background for every batch, so ineligible events will make their "
                        "batch fail. Validate all to see every reason now (this can take a while)."
                    )
                ),
                self._buttons(validate, self._continuebutton("Continue without validation")),
            ]
        elif phase == "confirm":
            objs += [
                html_pane(
                    alert(f"All {pv.eligible:,} selected events are eligible.", "ok")
                    + self._docs_html()
                ),
                self._buttons(self._continuebutton(f"Continue: {f.label} {pv.eligible:,} events")),
            ]
        elif phase == "warning":
            objs += [
                html_pane(alert(_continue_text(pv))),
                *self._violations_block(),
                html_pane(self._docs_html()),
                self._buttons(self._continuebutton(_continue_label(pv))),
            ]
        elif phase == "nothing":
            objs += [
                html_pane(
                    alert(f"None of the {pv.selected:,} selected events can be processed.", "err")
                ),
                *self._violations_block(),
                self._buttons(),
            ]
        elif phase == "preview":
            blast = ""
            if pv.validated and len(pv.blast_radius):
                blast = alert(
                    f"Blast radius: {len(pv.blast_radius):,} eligible events share a release batch "
                    "with an ineligible one and would fail with it if the run were not validated."
                )
            objs += [html_pane(self._docs_html() + blast)]
            if not pv.validated:
                objs.append(html_pane(alert(pv.reason)))
            elif pv.ineligible:
                objs += self._violations_block()
            buttons = []
            if not pv.validated:
                buttons.append(self._continuebutton(f.label))
            elif pv.releasable:
                buttons.append(
                    self._continuebutton(
                        f"{f.label} {pv.eligible:,} eligible"
                        if pv.releasable == pv.eligible == pv.selected
                        else _continue_label(pv)
                    )
                )
            objs.append(self._buttons(*buttons))
        self.body.objects = objs

    def __panel__(self) -> pn.viewable.Viewable:
        return self.modal


def _doc_label(doc_type: str, effect: str, revert: bool) -> str:
    """A line of the expected documents: created (for a revert: reversing) or discarded."""
    kind = "sales invoices" if doc_type == "SIN" else "credit notes"
    if effect == "discard":
        return f"Discarded {kind} (not posted yet)"
    return f"Reversing {kind}" if revert else kind.capitalize()


def _continue_text(pv: Preview) -> str:
    """What Continue will do with the whole selection, in the run's own terms."""
    if pv.action == "revert":
        return (
            f"{pv.ineligible:,} of the {pv.selected:,} selected events cannot be reverted; they "
            "are listed below with every reason. Continue runs the whole selection: "
            f"{pv.eligible:,} go back to Awaiting Release (a document not posted yet is "
            "discarded, a posted one gets a reversing document), and the others are left as "
            "they are with an application log each."
        )
    verb = "invoiced" if pv.action == "invoice" else "released"
    parts = [
        f"{pv.ineligible:,} of the {pv.selected:,} selected events cannot be fully processed; "
        "they are listed below with every reason. Continue runs the whole selection:"
    ]
    left_out = pv.selected - pv.releasable
    if pv.action == "invoice":
        parts.append(
            f"{pv.eligible:,} become documents and {pv.ineligible:,} get an error in the "
            "process log."
        )
    else:
        parts.append(f"{left_out:,} are left out at release (an app log each),")
        if pv.action == "release_and_invoice":
            parts.append(
                f"{pv.releasable - pv.eligible:,} are {verb} but cannot be invoiced (an error "
                f"in the process log), and {pv.eligible:,} become documents."
            )
        else:
            parts.append(f"and {pv.releasable:,} are {verb}.")
    return " ".join(parts)


def _continue_label(pv: Preview) -> str:
    verb = {"invoice": "invoice", "revert": "revert"}.get(pv.action, "release")
    return f"Continue with all {pv.selected:,} selected ({pv.releasable:,} to {verb})"
