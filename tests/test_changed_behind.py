"""Data changed behind BEAR's back (DESIGN §2.5.4, issue 11 "Measured 4"): a real database file
is changed with the ``duckdb`` module while BEAR is closed, reopened with ``bear.connect``, and
40 events — a few of them changed — are released and invoiced. Whatever the change, the run
processes the good events, the changed ones get a log naming the reason, every document adds
up (total = sum of its lines = the event's summary amount) and numbering stays gap-free.

Then the final check before documents are created (``bear.db.documents.check_documents``),
case by case, for what a rule may miss (a rule disabled, or rows changed since it judged).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import bear
from bear.db.documents import check_documents, create_documents
from bear.testing import make_workspace

USER = "ana@example.com"
N = 40


@dataclass(frozen=True)
class Case:
    """A change made behind BEAR's back and what the run must say about it.

    ``change`` is SQL run with the ``duckdb`` module; ``$a``, ``$b``, ``$c`` are the three
    events picked to change. ``affected`` (SQL over the changed file, same parameters) lists
    the run's events the change touches — a deleted company touches all its events. ``words``
    must appear in each affected event's log (app log or ERROR process log).
    """

    name: str
    change: str
    affected: str
    words: str


def _one_item(column_sql: str) -> str:
    """An UPDATE of the first item of each of the three changed events."""
    return (
        f"UPDATE billing_event_items SET {column_sql} WHERE id IN (SELECT min(id) FROM "
        "billing_event_items WHERE billing_event_id IN ($a, $b, $c) GROUP BY billing_event_id)"
    )


THREE = "SELECT unnest([$a, $b, $c]) AS id"

CASES = [
    Case("item product NULL", _one_item("product_id = NULL"), THREE, "no services product"),
    Case("item amount +1000", _one_item("amount = amount + 1000"), THREE, "items sum to"),
    Case(
        "items of a positive event made negative",
        "UPDATE billing_event_items SET amount = -abs(amount), unit_price = -abs(unit_price) "
        "WHERE billing_event_id IN ($a, $b, $c)",
        THREE,
        "items sum to",
    ),
    Case(
        "one item moved to another event",
        # to an event outside the run: each changed event loses one item
        _one_item("billing_event_id = (SELECT max(id) FROM billing_events)"),
        THREE,
        "items sum to",
    ),
    Case("item put on billing hold", _one_item("billing_hold = true"), THREE, "billing hold"),
    Case(
        "item out of sync with its source",
        _one_item("source_changed = true"),
        THREE,
        "no longer matches its source record",
    ),
    Case(
        "the event's project row deleted",
        "DELETE FROM projects WHERE id IN "
        "(SELECT project_id FROM billing_events WHERE id IN ($a, $b, $c))",
        "SELECT e.id FROM billing_events e WHERE e.project_id NOT IN (SELECT id FROM projects)",
        "no longer exists",
    ),
    Case(
        "the account row deleted",
        "DELETE FROM accounts WHERE id IN "
        "(SELECT account_id FROM billing_events WHERE id IN ($a, $b, $c))",
        "SELECT e.id FROM billing_events e WHERE e.account_id NOT IN (SELECT id FROM accounts)",
        "no longer exists",
    ),
    Case(
        "the company row deleted",
        "DELETE FROM companies WHERE id = (SELECT company_id FROM billing_events WHERE id = $a)",
        "SELECT e.id FROM billing_events e WHERE e.company_id NOT IN (SELECT id FROM companies)",
        "no longer exists",
    ),
    Case(
        "the product row deleted",
        "DELETE FROM products WHERE id = (SELECT min(product_id) FROM billing_event_items "
        "WHERE billing_event_id = $a)",
        "SELECT DISTINCT i.billing_event_id FROM billing_event_items i "
        "WHERE i.product_id NOT IN (SELECT id FROM products)",
        "no longer exists",
    ),
    Case(
        "project's company set to NULL",
        "UPDATE projects SET company_id = NULL WHERE id IN "
        "(SELECT project_id FROM billing_events WHERE id IN ($a, $b, $c))",
        "SELECT e.id FROM billing_events e JOIN projects p ON p.id = e.project_id "
        "WHERE p.company_id IS NULL",
        "no longer has an accounting company",
    ),
    Case(
        "document_counters rows deleted",
        "DELETE FROM document_counters",
        "SELECT 1 WHERE false",
        "",
    ),
    Case(
        "document_counters behind the documents",
        "UPDATE document_counters SET last_seq = 1",
        "SELECT 1 WHERE false",
        "",
    ),
]

STALE_CLAIM = Case(
    "a claim left by a run that no longer exists",
    "INSERT INTO event_claims SELECT unnest([$a, $b, $c]), 424242",
    "SELECT 1 WHERE false",
    "",
)


@pytest.fixture(scope="module")
def picked(demo_path: Path) -> tuple[list[int], list[int]]:
    """The run's 40 eligible events, and three of them — positive, with two or more items of
    non-zero amounts — to change."""
    path = demo_path.parent / "changed-behind-pick.duckdb"
    shutil.copy(demo_path, path)
    with bear.connect(path, resume=False) as ws:
        pv = ws.preview(ws.awaiting_release(), action="release_and_invoice", full=True)
        ids = pv.eligible_ids[:N]
        fit = ws.sql(
            "SELECT e.id FROM billing_events e WHERE e.id IN (SELECT unnest($ids)) "
            "AND e.summary_amount > 0 AND (SELECT count(*) FROM billing_event_items i "
            "WHERE i.billing_event_id = e.id AND i.amount <> 0) >= 2 ORDER BY e.id",
            ids=ids,
        ).id.tolist()
    path.unlink()
    assert len(ids) == N and len(fit) >= 3
    return ids, [fit[0], fit[len(fit) // 2], fit[-1]]


def _change_and_run(
    demo_path: Path, tmp_path: Path, picked: tuple[list[int], list[int]], case: Case
) -> tuple[bear.Workspace, Any, list[int], set[int]]:
    ids, (a, b, c) = picked
    path = tmp_path / "book.duckdb"
    shutil.copy(demo_path, path)
    params = {"a": a, "b": b, "c": c}
    con = duckdb.connect(str(path))  # BEAR is closed: another program edits the file
    con.execute(case.change, {k: v for k, v in params.items() if f"${k}" in case.change})
    affected = {
        int(r[0])
        for r in con.execute(
            case.affected, {k: v for k, v in params.items() if f"${k}" in case.affected}
        ).fetchall()
    } & set(ids)
    con.close()
    ws = bear.connect(path)
    run = ws.release_and_invoice(ids, user=USER, wait=True)
    return ws, run, ids, affected


def _logs_of(ws: bear.Workspace, run: Any) -> dict[int, str]:
    """Every message logged for an event of the run: app logs and ERROR process logs."""
    rows = ws.sql(
        "SELECT record_id AS id, message FROM app_logs WHERE run_id = $r AND record_id IS NOT NULL "
        "UNION ALL SELECT l.billing_event_id, l.message FROM process_logs l "
        "JOIN process_runs p ON p.id = l.process_run_id WHERE p.run_id = $r AND l.status = 'ERROR'",
        r=run.id,
    )
    out: dict[int, str] = {}
    for i, m in zip(rows.id, rows.message, strict=True):
        out[int(i)] = out.get(int(i), "") + " | " + str(m)
    return out


def assert_documents_add_up(ws: bear.Workspace) -> None:
    """Every document in the book: total = sum of its lines = |summary amount| of its event;
    numbers per company and type are 1..n without gaps, and the counter holds n."""
    bad = ws.sql(
        """
        SELECT d.number FROM documents d
        JOIN billing_events e ON e.id = d.billing_event_id
        LEFT JOIN (SELECT document_id, sum(amount) AS s FROM document_lines GROUP BY 1) l
               ON l.document_id = d.id
        WHERE d.total IS DISTINCT FROM coalesce(l.s, 0) OR d.total <> abs(e.summary_amount)
        """
    )
    assert bad.empty, f"documents that do not add up: {bad.number.tolist()[:10]}"
    numbering = ws.sql(
        """
        SELECT d.company_id, d.doc_type, count(*) AS n, count(DISTINCT d.seq) AS distinct_seq,
               max(d.seq) AS top, any_value(c.last_seq) AS counter
        FROM documents d
        LEFT JOIN document_counters c ON c.company_id = d.company_id AND c.doc_type = d.doc_type
        GROUP BY ALL
        """
    )
    for row in numbering.itertuples():
        assert row.n == row.distinct_seq == row.top == row.counter, row


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_change_made_while_bear_was_closed(demo_path, tmp_path, picked, case):
    ws, run, ids, affected = _change_and_run(demo_path, tmp_path, picked, case)
    try:
        assert run.status == "completed", run
        documented = set(
            ws.sql(
                "SELECT d.billing_event_id FROM documents d JOIN process_runs p "
                "ON p.id = d.process_run_id WHERE p.run_id = $r",
                r=run.id,
            ).billing_event_id.astype(int)
        )
        assert documented == set(ids) - affected  # the good events get their documents
        logs = _logs_of(ws, run)
        for event in affected:
            assert case.words in logs.get(event, ""), (event, logs.get(event))
        assert not set(logs) & documented
        assert run.sales_invoices + run.credit_notes == len(documented)
        assert_documents_add_up(ws)
    finally:
        ws.close()


def test_a_claim_left_by_a_run_that_no_longer_exists(demo_path, tmp_path, picked):
    ws, run, ids, _ = _change_and_run(demo_path, tmp_path, picked, STALE_CLAIM)
    try:
        assert run.status == "completed"
        assert run.sales_invoices + run.credit_notes == N
        cleared = ws.app_logs()
        assert cleared.message.str.contains("424242").any()
        assert_documents_add_up(ws)
    finally:
        ws.close()


def test_a_rule_disabled_the_final_check_still_keeps_the_stage_alive(demo_path, tmp_path, picked):
    """With invoice.item_without_product disabled, nothing but the final check before the
    insert stands between a NULL product and the NOT NULL constraint of document_lines."""
    ids, (a, b, c) = picked
    path = tmp_path / "book.duckdb"
    shutil.copy(demo_path, path)
    con = duckdb.connect(str(path))
    con.execute(_one_item("product_id = NULL"), {"a": a, "b": b, "c": c})
    con.close()
    with bear.connect(path) as ws:
        ws.settings.update(disabled_rules=["invoice.item_without_product"])
        run = ws.release_and_invoice(ids, user=USER, wait=True)
        assert run.status == "completed"
        assert run.sales_invoices + run.credit_notes == N - 3
        errors = ws.process_logs(run.process_run_id, status="ERROR")
        assert sorted(errors.billing_event_id) == sorted([a, b, c])
        assert set(errors.rule_id) == {"invoice.item_without_product"}
        assert errors.message.str.contains("has no services product").all()
        assert_documents_add_up(ws)


# -- the final check before the documents, case by case ----------------------------------------
def _check(ws: bear.Workspace, ids: list[int]) -> dict[int, tuple[str, str]]:
    cur = ws.db.cursor()
    cur.register("_ids_view", pa.table({"billing_event_id": pa.array(ids, pa.int64())}))
    cur.execute("CREATE OR REPLACE TEMP TABLE _ids AS SELECT * FROM _ids_view")
    cur.unregister("_ids_view")
    n = check_documents(cur, "_ids")
    rows = cur.execute("SELECT billing_event_id, rule_id, message FROM _doc_culprits").fetchall()
    assert n == len(rows)
    return {int(r[0]): (r[1], r[2]) for r in rows}


def _released_book(sql: str, **book: Any) -> bear.Workspace:
    events = [{"id": i, "released": True} for i in (1, 2)]
    ws = make_workspace(book.pop("events", events), **book)
    if sql:
        with ws.db.transaction() as tx:
            tx.execute(sql)
    return ws


@pytest.mark.parametrize(
    ("sql", "rule_id", "words"),
    [
        ("UPDATE billing_event_items SET product_id = NULL WHERE billing_event_id = 2",
         "invoice.item_without_product", "has no services product"),
        ("UPDATE billing_event_items SET product_id = 8 WHERE billing_event_id = 2",
         "invoice.product_missing", "refers to product 8, which no longer exists"),
        ("UPDATE billing_event_items SET amount = amount + 1000 WHERE billing_event_id = 2",
         "invoice.amount_mismatch", "totals 100.00 but its items sum to 1100.00"),
        ("UPDATE billing_event_items SET amount = -amount WHERE billing_event_id = 2",
         "invoice.amount_mismatch", "a sales invoice cannot total below zero"),
        ("UPDATE billing_events SET account_id = NULL WHERE id = 2",
         "invoice.no_account", "has no account"),
        ("UPDATE billing_events SET company_id = 9 WHERE id = 2",
         "invoice.company_missing", "company 9 of BE-0000002 no longer exists"),
        ("UPDATE billing_events SET account_id = 9 WHERE id = 2",
         "invoice.account_missing", "account 9 of BE-0000002 no longer exists"),
        ("INSERT INTO documents (id, number, doc_type, billing_event_id, account_id, company_id, "
         "currency, total, document_date, seq) VALUES (77, 'SIN000077', 'SIN', 2, 1, 1, 'USD', 100, "
         "DATE '2026-01-15', 77)",
         "invoice.already_invoiced", "document SIN000077 already exists for BE-0000002"),
        ("INSERT INTO document_lines SELECT 5, 77, id, 1, 'x', 1, 1, 1 FROM billing_event_items "
         "WHERE billing_event_id = 2",
         "invoice.item_already_billed", "is already a line of document 77"),
    ],
    ids=["product-null", "product-gone", "amount", "sign", "no-account", "company-gone",
         "account-gone", "document-exists", "item-on-a-line"],
)  # fmt: skip
def test_check_documents_names_each_culprit(sql, rule_id, words):
    with _released_book(sql) as ws:
        found = _check(ws, [1, 2])
    assert set(found) == {2}  # event 1 is fine
    assert found[2][0] == rule_id and words in found[2][1], found


def test_check_documents_joins_every_problem_of_an_event_and_skips_what_create_skips():
    sql = (
        "UPDATE billing_event_items SET product_id = NULL, amount = -5 WHERE billing_event_id = 2;"
        "UPDATE billing_events SET account_id = NULL WHERE id = 2;"
        "UPDATE billing_event_items SET product_id = NULL WHERE billing_event_id = 3"
    )
    events = [{"id": 1, "released": True}, {"id": 2, "released": True}, {"id": 3}]
    with _released_book(sql, events=events) as ws:
        found = _check(ws, [1, 2, 3])
    assert set(found) == {2}  # 3 is not released: create_documents would not take it
    msg = found[2][1]
    for words in ("has no account", "has no services product", "items sum to -5.00"):
        assert words in msg


def test_excluded_culprits_leave_the_others_to_their_documents():
    from bear.db.documents import exclude_culprits

    sql = "UPDATE billing_event_items SET product_id = NULL WHERE billing_event_id = 2"
    with _released_book(sql) as ws, ws.db.transaction() as tx:
        tx.execute("CREATE TEMP TABLE _ok AS SELECT unnest([1, 2])::BIGINT AS billing_event_id")
        tx.execute(
            "CREATE TEMP TABLE _bad (billing_event_id BIGINT, rule_id VARCHAR, message VARCHAR)"
        )
        assert exclude_culprits(tx, "_ok", "_bad") == 1
        assert tx.execute("SELECT billing_event_id, rule_id FROM _bad").fetchall() == [
            (2, "invoice.item_without_product")
        ]
        assert create_documents(tx, "_ok", None) == (1, 0)


@pytest.mark.parametrize(
    "sql",
    ["DELETE FROM document_counters", "UPDATE document_counters SET last_seq = 1"],
    ids=["missing", "behind"],
)
def test_numbering_continues_from_the_documents_when_a_counter_is_missing_or_behind(sql):
    events = [{"id": i, "invoiced": True} for i in (1, 2, 3)] + [{"id": 4, "released": True}]
    with _released_book(sql, events=events) as ws:
        with ws.db.transaction() as tx:
            tx.execute("CREATE TEMP TABLE _ok AS SELECT 4::BIGINT AS billing_event_id")
            create_documents(tx, "_ok", None)
        numbers = ws.sql("SELECT number FROM documents ORDER BY seq").number.tolist()
        assert numbers == ["SIN000001", "SIN000002", "SIN000003", "SIN000004"]
        assert ws.sql("SELECT last_seq FROM document_counters").last_seq.tolist() == [4]


def test_counters_are_rebuilt_when_the_book_opens(tmp_path):
    path = tmp_path / "book.duckdb"
    make_workspace([{"id": i, "invoiced": True} for i in (1, 2)], path=path).close()
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM document_counters")
    con.close()
    with bear.connect(path) as ws:
        assert ws.sql("SELECT * FROM document_counters").to_dict("records") == [
            {"company_id": 1, "doc_type": "SIN", "last_seq": 2}
        ]


def test_a_counter_ahead_of_the_documents_is_never_wound_back(tmp_path):
    """A number once given (its document since deleted outside BEAR) is not given again."""
    path = tmp_path / "book.duckdb"
    make_workspace([{"id": 1, "invoiced": True}], path=path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE document_counters SET last_seq = 9")
    con.close()
    with bear.connect(path) as ws:
        assert ws.sql("SELECT last_seq FROM document_counters").last_seq.tolist() == [9]
