"""The declarative rules file (setting ``rules_file``): a valid file adds enforced rules; every
bad file is refused with the file, the rule and the problem named — never skipped — and
hostile predicates change nothing."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import bear
from bear.errors import BearError, RulesFileError
from bear.rules.declarative import check_predicate, load_rules_file
from bear.testing import make_workspace

GOOD = """
    [[rule]]
    id = "acme.large_credit"
    stage = "release"
    severity = "block"
    description = "Credits above 10,000 need a second look."
    when = "summary_amount < -10000"
    message = "credit of {summary_amount} {currency} on project {project_name} needs a second approval"

    [[rule]]
    id = "acme.weekend"
    stage = "invoice"
    severity = "warn"
    description = "Documents dated on a weekend."
    when = "date_part('dow', document_date) IN (0, 6) AND document_date >= DATE '2020-01-01'"
    message = "document date {document_date} of {event_name} is on a weekend"

    [[rule]]
    id = "acme.old"
    stage = "invoice"
    when = "CAST(event_date AS DATE) < DATE '2000-01-01'"
    message = "too old"
"""

EVENTS = [
    {"id": 1, "summary_amount": "-20000.00"},
    {"id": 2},
    {"id": 3, "event_date": "2026-01-17"},  # a Saturday
]


@pytest.fixture(autouse=True)
def _no_entry_points(monkeypatch):
    monkeypatch.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "1")


def write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_valid_rules_file_adds_enforced_rules(tmp_path):
    path = write(tmp_path, GOOD)
    with make_workspace(EVENTS, settings={"rules_file": str(path)}) as ws:
        rules = ws.rules().set_index("id")
        mine = rules.loc[["acme.large_credit", "acme.weekend", "acme.old"]]
        assert set(mine.plugin) == {"rules_file"}
        assert mine.stage.tolist() == ["release", "invoice", "invoice"]
        assert mine.severity.tolist() == ["block", "warn", "block"]  # block is the default
        assert (
            mine.loc["acme.large_credit", "description"]
            == "Credits above 10,000 need a second look."
        )
        pv = ws.preview([1, 2, 3])
        v = pv.violations
        credit = v[v.rule_id == "acme.large_credit"]
        assert credit.billing_event_id.tolist() == [1]
        assert credit.message.iloc[0] == (
            "credit of -20000.00 USD on project Project 1 needs a second approval"
        )
        weekend = v[v.rule_id == "acme.weekend"]
        assert weekend.billing_event_id.tolist() == [3]
        assert weekend.severity.iloc[0] == "warn"
        assert weekend.message.iloc[0] == "document date 2026-01-17 of BE-0000003 is on a weekend"
        assert "acme.old" not in set(v.rule_id)
        assert pv.eligible_ids == [2, 3]


def test_rules_file_set_through_settings_is_used_when_the_book_is_opened(tmp_path):
    path = write(tmp_path, GOOD)
    db = tmp_path / "book.duckdb"
    make_workspace(EVENTS, path=db).close()
    with bear.connect(db) as ws:
        ws.settings.update(rules_file=str(path))
    with bear.connect(db) as ws:
        assert ws.settings.rules_file == str(path)
        assert ws.rules().set_index("id").loc["acme.large_credit", "plugin"] == "rules_file"
        assert ws.preview([1, 2, 3], action="release").eligible_ids == [2, 3]


def test_rules_file_set_through_settings_applies_at_once(tmp_path):
    path = write(tmp_path, GOOD)
    with make_workspace(EVENTS) as ws:
        ws.settings.update(rules_file=str(path))
        assert "acme.large_credit" in set(ws.rules().id)


def test_a_bad_rules_file_is_never_skipped_at_start_up(tmp_path):
    path = write(tmp_path, GOOD)
    db = tmp_path / "book.duckdb"
    make_workspace(EVENTS, path=db, settings={"rules_file": str(path)}).close()
    write(tmp_path, GOOD.replace("summary_amount < -10000", "summary_amount < -10000; SELECT 1"))
    with pytest.raises(RulesFileError) as e:
        bear.connect(db)
    assert str(path) in str(e.value) and "acme.large_credit" in str(e.value)
    path.unlink()
    with pytest.raises(RulesFileError, match="file not found"):
        bear.connect(db)
    write(tmp_path, GOOD)
    with bear.connect(db) as ws:
        assert "acme.large_credit" in set(ws.rules().id)


def rule(**keys: str | None) -> str:
    """One [[rule]] table with good values for every key not given (None drops a key)."""
    values = {
        "id": "acme.bad",
        "stage": "release",
        "severity": "block",
        "description": "a rule",
        "when": "summary_amount > 0",
        "message": "{event_name} fails",
        **keys,
    }
    lines = ["[[rule]]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


BAD = [
    ("toml-syntax", '[[rule]\nid = "acme.bad"\n', None, "not valid TOML"),
    (
        "unknown-column",
        rule(when="no_such_column > 0"),
        "acme.bad",
        "unknown column 'no_such_column'",
    ),
    (
        "second-statement",
        rule(when="summary_amount > 0; DROP TABLE billing_events"),
        "acme.bad",
        "must not contain ';'",
    ),
    (
        "subquery",
        rule(when="(SELECT count(*) FROM billing_events) > 0"),
        "acme.bad",
        "subquery expressions are not allowed",
    ),
    (
        "table-function",
        rule(when="EXISTS (SELECT * FROM read_csv('/etc/passwd'))"),
        "acme.bad",
        "subquery expressions are not allowed",
    ),
    (
        "read-function",
        rule(when="read_text('/etc/passwd') IS NOT NULL"),
        "acme.bad",
        "function 'read_text' is not allowed",
    ),
    (
        "getenv",
        rule(when="getenv('HOME') = '/root'"),
        "acme.bad",
        "function 'getenv' is not allowed",
    ),
    (
        "current-setting",
        rule(when="current_setting('threads') > 1"),
        "acme.bad",
        "function 'current_setting' is not allowed",
    ),
    ("line-comment", rule(when="summary_amount > 0 -- fine"), "acme.bad", "comments"),
    ("block-comment", rule(when="summary_amount /* x */ > 0"), "acme.bad", "comments"),
    ("aggregate", rule(when="sum(summary_amount) > 0"), "acme.bad", "aggregate function 'sum'"),
    ("count-star", rule(when="count(*) > 1"), "acme.bad", "aggregate function 'count'"),
    ("window", rule(when="rank() OVER () > 1"), "acme.bad", "window expressions are not allowed"),
    (
        "qualified-column",
        rule(when="billing_events.id > 0"),
        "acme.bad",
        "plain batch column names",
    ),
    ("not-an-expression", rule(when="summary_amount >"), "acme.bad", "not a valid SQL expression"),
    ("duplicate-id", rule() + rule(), "acme.bad", "duplicate id"),
    ("reserved-release", rule(id="release.mine"), "release.mine", "belong to the built-in rules"),
    ("reserved-invoice", rule(id="invoice.mine"), "invoice.mine", "belong to the built-in rules"),
    ("bad-id", rule(id="Acme Bad"), "Acme Bad", "must look like 'namespace.name'"),
    ("missing-id", rule(id=None), "rule #1", "'id' is required"),
    ("missing-when", rule(when=None), "acme.bad", "'when' is required"),
    ("missing-message", rule(message=None), "acme.bad", "'message' is required"),
    ("missing-stage", rule(stage=None), "acme.bad", "'stage' is required"),
    (
        "bad-severity",
        rule(severity="fatal"),
        "acme.bad",
        "severity 'fatal' must be 'block' or 'warn'",
    ),
    (
        "bad-stage",
        rule(stage="deploy"),
        "acme.bad",
        "stage 'deploy' must be 'release', 'invoice' or 'revert'",
    ),
    ("unknown-key", rule(sevrity="warn"), "acme.bad", "unknown key(s) ['sevrity']"),
    ("unknown-placeholder", rule(message="{nope} fails"), "acme.bad", "unknown column {nope}"),
    ("positional-placeholder", rule(message="{0} fails"), "acme.bad", "must name one batch column"),
    ("broken-placeholder", rule(message="{event_name fails"), "acme.bad", "'message'"),
    ("top-level-key", 'when = "true"\n' + rule(), None, "unexpected top-level key(s) ['when']"),
    ("rule-not-array", '[rule]\nid = "acme.bad"\n', None, "must be an array of tables"),
]


@pytest.mark.parametrize(
    ("text", "rule_id", "problem"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_a_bad_rules_file_raises_naming_file_rule_and_problem(tmp_path, text, rule_id, problem):
    path = write(tmp_path, text)
    with pytest.raises(RulesFileError) as e:
        load_rules_file(path)
    msg = str(e.value)
    assert msg.startswith(f"rules file {path}")
    assert e.value.path == str(path)
    if rule_id is not None:
        assert rule_id in msg
    assert problem in msg


@pytest.fixture
def guarded(tmp_path):
    """A book whose rules_file is a good file; yields (ws, path of that file)."""
    good = write(tmp_path, GOOD, "good.toml")
    with make_workspace(EVENTS, settings={"rules_file": str(good)}) as ws:
        yield ws, good


@pytest.mark.parametrize(
    ("text", "rule_id", "problem"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_setting_a_bad_rules_file_is_refused_and_changes_nothing(
    guarded, tmp_path, text, rule_id, problem
):
    ws, good = guarded
    bad = write(tmp_path, text, "bad.toml")
    events_before = ws.sql("SELECT count(*) AS n FROM billing_events").n.iloc[0]
    stored_before = ws.sql("SELECT value FROM settings WHERE key = 'rules_file'").value.tolist()
    with pytest.raises(RulesFileError) as e:
        ws.settings.update(rules_file=str(bad))
    assert str(bad) in str(e.value) and problem in str(e.value)
    assert ws.settings.rules_file == str(good)
    assert (
        ws.sql("SELECT value FROM settings WHERE key = 'rules_file'").value.tolist()
        == stored_before
    )
    assert ws.sql("SELECT count(*) AS n FROM billing_events").n.iloc[0] == events_before == 3
    assert "acme.large_credit" in set(ws.rules().id)
    assert ws.preview([1, 2, 3], action="release").eligible_ids == [2, 3]


def test_a_rules_file_that_is_missing_is_refused(guarded, tmp_path):
    ws, good = guarded
    with pytest.raises(RulesFileError, match="file not found"):
        ws.settings.update(rules_file=str(tmp_path / "nowhere.toml"))
    assert ws.settings.rules_file == str(good)


def test_a_predicate_of_the_wrong_type_is_refused_naming_the_file(guarded, tmp_path):
    ws, good = guarded
    bad = write(tmp_path, rule(when="event_name || 'x'"), "bad.toml")
    with pytest.raises(BearError) as e:
        ws.settings.update(rules_file=str(bad))
    msg = str(e.value)
    assert "'acme.bad'" in msg and str(bad) in msg and "invalid SQL" in msg
    assert ws.settings.rules_file == str(good)


def test_hostile_predicates_never_reach_the_database(guarded, tmp_path):
    """Every hostile predicate is refused before it runs: the book and its tables stand."""
    ws, _ = guarded
    hostile = [
        "summary_amount > 0; DROP TABLE billing_events",
        "true); DROP TABLE billing_events; SELECT (1",
        "(SELECT count(*) FROM billing_events) > 0",
        "EXISTS (SELECT * FROM read_csv('/etc/passwd'))",
        "getenv('HOME') IS NOT NULL",
        "current_setting('threads') > 0",
        "nextval('runs_id_seq') > 0",
        "query('DELETE FROM billing_events') IS NULL",
        "summary_amount > 0 --",
    ]
    for n, when in enumerate(hostile):
        path = write(tmp_path, rule(when=when), f"hostile{n}.toml")
        with pytest.raises(RulesFileError):
            ws.settings.update(rules_file=str(path))
        with pytest.raises(ValueError):
            check_predicate(when)
    assert ws.sql("SELECT count(*) AS n FROM billing_events").n.iloc[0] == 3
    assert ws.sql("SELECT count(*) AS n FROM billing_event_items").n.iloc[0] == 3
    assert ws.runs().empty


@pytest.mark.parametrize(
    "when",
    [
        "summary_amount < -10000 AND currency = 'EUR'",
        "coalesce(invoice_date, event_date) < DATE '2026-01-01'",
        "CAST(summary_amount AS INTEGER) BETWEEN 1 AND 5",
        "project_name ILIKE '%audit%' OR region IN ('EMEA', 'APAC')",
        "CASE WHEN currency = 'JPY' THEN summary_amount > 1000000 ELSE summary_amount > 10000 END",
        "greatest(items_on_hold, items_out_of_sync) > 0",
    ],
)
def test_ordinary_predicates_are_accepted(when):
    assert check_predicate(when)
