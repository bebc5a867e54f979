"""``ws.sql`` is a sandbox: no statement, whatever its shape, changes a table, a sequence or a
setting, or reads or lists a file on the server (issue 12, finding 1)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bear.errors import QueryError

SECRET = "s3cr3t-marker-7f1c"

# Statements that must be refused. {secret} is a file holding SECRET, {dir} its folder,
# {db} another DuckDB file, {out} a path that must not be written.
HOSTILE = [
    # writes hidden in a SELECT
    "WITH d AS (DELETE FROM documents RETURNING id) SELECT count(*) FROM d",
    "WITH i AS (INSERT INTO settings (key, value, updated_at) VALUES ('release_batch_size', '1', now()) RETURNING key) SELECT * FROM i",
    "WITH u AS (UPDATE billing_events SET approved = false RETURNING id) SELECT count(*) FROM u",
    "SELECT (SELECT count(*) FROM (WITH d AS (DELETE FROM documents RETURNING id) SELECT * FROM d))",
    "SELECT * FROM billing_events WHERE id IN (WITH d AS (DELETE FROM runs RETURNING id) SELECT id FROM d)",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3), d AS (DELETE FROM outbox RETURNING id) SELECT * FROM r, d",
    "SELECT 1 UNION ALL (WITH d AS (DELETE FROM documents RETURNING id) SELECT count(*) FROM d)",
    # plain writes and DDL
    "DELETE FROM documents",
    "INSERT INTO settings (key, value, updated_at) VALUES ('plugins_dir', '\"/tmp\"', now())",
    "UPDATE billing_events SET summary_amount = 0",
    "MERGE INTO documents USING (SELECT 1 AS id) s ON documents.id = s.id WHEN MATCHED THEN DELETE",
    "DROP TABLE documents",
    "CREATE TABLE stolen AS SELECT * FROM documents",
    "CREATE TEMP TABLE stolen AS SELECT 1",
    "CREATE MACRO m() AS 1",
    "CREATE SEQUENCE s2",
    "CREATE VIEW v AS SELECT 1",
    "ALTER TABLE documents ADD COLUMN x INTEGER",
    "TRUNCATE documents",
    "SELECT 1; DELETE FROM documents",
    "SELECT 1 -- comment\n; DELETE FROM documents",
    # EXPLAIN ANALYZE runs its statement
    "EXPLAIN ANALYZE DELETE FROM documents",
    "explain   analyse delete from documents",
    "EXPLAIN ANALYZE SELECT count(*) FROM billing_events",
    "EXPLAIN DELETE FROM documents",
    # sequences and state
    "SELECT nextval('runs_id_seq')",
    "SELECT \"nextval\"('runs_id_seq')",
    "SELECT NEXTVAL('runs_id_seq')",
    "SELECT \"NEXTVAL\"('runs_id_seq')",
    "SELECT main.nextval('runs_id_seq')",
    "SELECT system.main.nextval('runs_id_seq')",
    "SELECT currval('runs_id_seq')",
    "SELECT setseed(0.5)",
    "SELECT id, nextval('runs_id_seq') FROM billing_events LIMIT 1",
    "SELECT sleep_ms(60000)",
    "SELECT write_log('x')",
    "SELECT current_setting('temp_directory')",
    "SELECT getvariable('x')",
    "SET VARIABLE x = 1",
    # files
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM read_csv_auto('{secret}')",
    "SELECT * FROM read_csv(['{secret}'])",
    "SELECT * FROM \"READ_CSV\"('{secret}')",
    "SELECT * FROM main.read_csv('{secret}')",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM read_blob('{secret}')",
    "SELECT * FROM read_json('{secret}')",
    "SELECT * FROM read_json_objects('{secret}')",
    "SELECT * FROM read_parquet('{secret}')",
    "SELECT * FROM parquet_metadata('{secret}')",
    "SELECT * FROM sniff_csv('{secret}')",
    "SELECT * FROM glob('{dir}/*')",
    "SELECT * FROM '{secret}'",
    'SELECT * FROM "{secret}"',
    "FROM '{secret}'",
    "SELECT * FROM '{dir}/*.txt'",
    "DESCRIBE '{secret}'",
    "SUMMARIZE '{secret}'",
    "SELECT * FROM documents UNION ALL BY NAME SELECT * FROM read_text('{secret}')",
    "SELECT (SELECT content FROM read_text('{secret}'))",
    'SELECT * FROM (WITH "{secret}" AS (SELECT 1) SELECT 1), "{secret}"',
    "WITH x AS (SELECT * FROM '{secret}') SELECT * FROM x",
    "SELECT * FROM billing_events e JOIN LATERAL (SELECT * FROM read_text('{secret}')) t ON true",
    "COPY documents TO '{out}'",
    "COPY (SELECT 1) TO '{out}' (FORMAT csv)",
    "EXPORT DATABASE '{out}'",
    "ATTACH '{db}' AS other",
    "SELECT * FROM other.main.t",
    "SELECT * FROM system.main.documents",
    "SELECT * FROM temp.main.documents",
    "INSTALL httpfs",
    "LOAD httpfs",
    # SQL text run by a function
    "SELECT * FROM query('DELETE FROM documents')",
    "SELECT * FROM query('SELECT * FROM read_text(''{secret}'')')",
    "SELECT * FROM query_table('documents')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    # configuration, secrets, maintenance
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "PRAGMA table_info('documents')",
    "PRAGMA enable_profiling",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM which_secret('s3://x', 's3')",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM force_checkpoint()",
    "SELECT * FROM enable_logging()",
    "SELECT * FROM duckdb_temporary_files()",
    "CHECKPOINT",
    "VACUUM",
    "ANALYZE",
    "CALL checkpoint()",
    "BEGIN TRANSACTION",
    "COMMIT",
    "ROLLBACK",
    "DETACH DATABASE bear",
    "USE memory",
    # Python objects of the calling process
    "SELECT * FROM secret_frame",
    # not SQL at all
    "",
    "   ",
    "SELECT 1\x00; DELETE FROM documents",
]

ALLOWED = [
    ("SELECT count(*) AS n FROM billing_events", None),
    ("WITH a AS (SELECT id FROM billing_events) SELECT count(*) AS n FROM a", None),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT sum(n) AS s FROM r",
        None,
    ),
    (
        "SELECT currency, sum(summary_amount) AS total FROM billing_events GROUP BY ALL ORDER BY 1",
        None,
    ),
    (
        "SELECT id, row_number() OVER (ORDER BY summary_amount DESC) AS rk FROM billing_events LIMIT 3",
        None,
    ),
    ("SELECT * FROM billing_events WHERE id = $id", {"id": 1}),
    ("EXPLAIN SELECT count(*) FROM billing_events", None),
    ("DESCRIBE billing_events", None),
    ("SHOW TABLES", None),
    ("SUMMARIZE documents", None),
    ("SELECT table_name FROM information_schema.tables ORDER BY 1", None),
    ("SELECT table_name FROM duckdb_tables() WHERE NOT temporary", None),
    ("SELECT * FROM range(3) r(i) CROSS JOIN (VALUES ('a')) v(x)", None),
    ("SELECT random() < 2 AS ok, uuid() IS NOT NULL AS u, today() AS d", None),
    (
        "SELECT list_transform([1, 2], lambda x: x + 1) AS l, {'a': 1} AS s, 'x' LIKE 'x%' AS like_",
        None,
    ),
    ("FROM billing_events SELECT id LIMIT 1", None),
    ("SELECT id FROM billing_events UNION SELECT id FROM documents", None),
    ('SELECT "id" FROM "billing_events" LIMIT 1', None),
]


@pytest.fixture
def book(demo_ws, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{SECRET}\n{SECRET},{SECRET}\n")
    other = tmp_path / "other.duckdb"
    import duckdb

    duckdb.connect(str(other)).execute("CREATE TABLE t AS SELECT 42 AS x").close()
    demo_ws.release_and_invoice(
        demo_ws.awaiting_release(), "tester", wait=True
    )  # documents and runs to lose
    fill = {
        "secret": str(secret),
        "dir": str(tmp_path),
        "db": str(other),
        "out": str(tmp_path / "out.csv"),
    }
    return demo_ws, fill, tmp_path


def _state(ws, checksums):
    cur = ws.db.cursor()
    seqs = cur.execute(
        "SELECT sequence_name, last_value FROM duckdb_sequences() ORDER BY 1"
    ).fetchall()
    tables = cur.execute(
        "SELECT database_name, table_name FROM duckdb_tables() ORDER BY ALL"
    ).fetchall()
    return checksums(ws), seqs, tables, ws.settings.as_dict()


def _refused(ws, statement: str) -> str:
    secret_frame = pd.DataFrame({"x": [SECRET]})  # noqa: F841 - what a replacement scan would read
    with pytest.raises(QueryError) as info:
        ws.sql(statement)
    return str(info.value)


def test_every_hostile_statement_is_refused_and_changes_nothing(book, checksums):
    ws, fill, folder = book
    before = _state(ws, checksums)
    files = sorted(p.name for p in folder.iterdir())
    assert len(HOSTILE) >= 51
    for template in HOSTILE:
        statement = template.format(**fill)
        message = _refused(ws, statement)
        assert message.startswith("sql: "), (statement, message)
        assert SECRET not in message, statement
        assert "Traceback" not in message
    assert _state(ws, checksums) == before
    assert sorted(p.name for p in folder.iterdir()) == files  # nothing written
    # and the refusals survive a reopening of the book
    path = ws.db.path
    ws.close()
    import bear

    with bear.connect(path) as again:
        assert _state(again, checksums)[0] == before[0]


@pytest.mark.parametrize(("statement", "params"), ALLOWED)
def test_exploration_sql_still_answers(demo_ws, statement, params):
    frame = demo_ws.sql(statement, **(params or {}))
    assert isinstance(frame, pd.DataFrame)
    assert len(frame.columns) >= 1


def test_money_stays_decimal(demo_ws):
    from decimal import Decimal

    total = demo_ws.sql("SELECT sum(summary_amount) AS t FROM billing_events")["t"][0]
    assert isinstance(total, Decimal)


def test_errors_are_query_errors(demo_ws):
    with pytest.raises(QueryError, match="nosuch"):
        demo_ws.sql("SELECT nosuch FROM billing_events")
    with pytest.raises(QueryError, match="not a table or view of this book"):
        demo_ws.sql("SELECT * FROM nosuch_table")
    # the workspace keeps working after a refusal and after an error
    assert demo_ws.sql("SELECT 1 AS one")["one"][0] == 1


# Hostile fragments and the shapes they may hide in: every combination is refused.
_PAYLOADS = [
    "(WITH d AS (DELETE FROM documents RETURNING id) SELECT count(*) FROM d)",
    "(SELECT count(*) FROM read_text('{secret}'))",
    "(SELECT count(*) FROM '{secret}')",
    "(SELECT nextval('runs_id_seq'))",
    "(SELECT count(*) FROM glob('{dir}/*'))",
    "(SELECT count(*) FROM query('SELECT 1'))",
    "(SELECT current_setting('threads'))",
    "(WITH u AS (UPDATE settings SET value = '1' RETURNING key) SELECT count(*) FROM u)",
]
_SHAPES = [
    "SELECT {p} AS x",
    "SELECT * FROM billing_events WHERE id IN {p}",
    "SELECT * FROM (SELECT {p} AS x) s",
    "WITH a AS (SELECT {p} AS x) SELECT * FROM a",
    "SELECT 1 AS x UNION ALL SELECT {p}",
    "SELECT CASE WHEN true THEN {p} END AS x",
    "SELECT coalesce(NULL, {p}) AS x",
    "SELECT list_transform([1], lambda y: {p}) AS x",
    "SELECT count(*) FILTER (WHERE id = {p}) AS x FROM billing_events",
    "SELECT * FROM billing_events ORDER BY {p} LIMIT 1",
    "SELECT * FROM billing_events e, LATERAL (SELECT {p} AS x) l LIMIT 1",
    "EXPLAIN SELECT {p}",
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    payload=st.sampled_from(_PAYLOADS),
    shapes=st.lists(st.sampled_from(_SHAPES), min_size=1, max_size=3),
)
def test_generated_shapes_are_refused(book, checksums, payload, shapes):
    ws, fill, _ = book
    statement = payload.format(**fill)
    for shape in shapes:  # nest the payload in one shape after another
        statement = (
            "(" + shape.format(p=statement) + ")"
            if shape != shapes[-1]
            else shape.format(p=statement)
        )
    before = checksums(ws)
    message = _refused(ws, statement)
    assert SECRET not in message
    assert checksums(ws) == before
