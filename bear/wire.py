"""How BEAR's values cross the network: tables as Arrow IPC (or JSON), money exact.

Both ends use this module — the HTTP API (``bear.api``) encodes, the remote workspace
(``bear.remote``) decodes — so a table or a preview read through the server is the same
``DataFrame`` (``Decimal`` money, integer ids) as one read from a local book.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import io
import json
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from bear.models import Preview, RuleTiming, RunResult

ARROW = "application/vnd.apache.arrow.stream"
# Field metadata of a column whose values Arrow cannot type (a setting's old and new values
# mix numbers, text, lists): it travels as JSON text and is read back as the values.
_JSON_FIELD = {b"bear.encoding": b"json"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, with or without port and brackets) is this
    machine's loopback: ``localhost``, ``127.0.0.0/8``, ``::1``."""
    import ipaddress

    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def to_arrow(table: pd.DataFrame | pa.Table) -> pa.Table:
    """``table`` as Arrow; a column of mixed Python values (int, text, list …) travels as
    JSON text marked in its field metadata, so ``from_arrow_bytes`` gives the values back."""
    if isinstance(table, pa.Table):
        return table
    try:
        return pa.Table.from_pandas(table, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    arrays, fields = [], []
    for name in table.columns:
        column = table[name]
        try:
            array = pa.array(column, from_pandas=True)
            field = pa.field(str(name), array.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array([json.dumps(jsonable(v)) for v in column], pa.string())
            field = pa.field(str(name), pa.string(), metadata=_JSON_FIELD)
        arrays.append(array)
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def arrow_bytes(table: pd.DataFrame | pa.Table) -> bytes:
    """A table as an Arrow IPC stream."""
    t = to_arrow(table)
    sink = io.BytesIO()
    with ipc.new_stream(sink, t.schema) as writer:
        writer.write_table(t)
    return sink.getvalue()


def from_arrow_bytes(raw: bytes) -> pd.DataFrame:
    """The DataFrame of an Arrow IPC stream (DECIMAL as ``Decimal``; JSON-encoded columns as
    their values)."""
    table = ipc.open_stream(raw).read_all()
    frame = table.to_pandas()
    for field in table.schema:
        if field.metadata and field.metadata.get(b"bear.encoding") == b"json":
            frame[field.name] = [json.loads(v) for v in frame[field.name]]
    return frame


def jsonable(value: Any) -> Any:
    """A value JSON can carry exactly: ``Decimal`` as its text, dates as ISO text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def table_json(table: pd.DataFrame | pa.Table) -> dict[str, Any]:
    """``{"columns": [...], "rows": [[...], ...]}`` with exact money (as text)."""
    frame = table.to_pandas() if isinstance(table, pa.Table) else table
    columns = [str(c) for c in frame.columns]
    rows = [[jsonable(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return {"columns": columns, "rows": rows}


def encode_table(table: pd.DataFrame | pa.Table) -> str:
    """A table inside a JSON document: base64 of its Arrow IPC stream."""
    return base64.b64encode(arrow_bytes(table)).decode("ascii")


def decode_table(text: str) -> pd.DataFrame:
    return from_arrow_bytes(base64.b64decode(text))


def run_json(run: RunResult) -> dict[str, Any]:
    return {f.name: jsonable(getattr(run, f.name)) for f in dataclasses.fields(run)}


_RUN_TIMES = ("created_at", "started_at", "updated_at", "finished_at")


def run_of(data: dict[str, Any]) -> RunResult:
    """The ``RunResult`` of ``run_json``'s document (times back as ``datetime``)."""
    names = {f.name for f in dataclasses.fields(RunResult)}
    values = {k: v for k, v in data.items() if k in names}
    for key in _RUN_TIMES:
        if isinstance(values.get(key), str):
            values[key] = dt.datetime.fromisoformat(values[key])
    return RunResult(**values)


def preview_json(pv: Preview) -> dict[str, Any]:
    """A preview with every table as Arrow (base64): the remote workspace rebuilds it whole."""
    return {
        **pv.counts(),
        "eligible_ids": encode_table(pa.table({"id": pa.array(pv.eligible_ids, pa.int64())})),
        "violations": encode_table(pv.violations_table),
        "expected_documents": encode_table(pv.expected_documents),
        "blast_radius": encode_table(pv.blast_radius_table),
        "by_rule": encode_table(pv.by_rule),
        "timings": [jsonable(dataclasses.asdict(t)) for t in pv.timings],
    }


def preview_of(data: dict[str, Any]) -> Preview:
    def arrow(name: str) -> pa.Table:
        return ipc.open_stream(base64.b64decode(data[name])).read_all()

    fields = {f.name for f in dataclasses.fields(RuleTiming)}
    return Preview(
        action=data["action"],
        selected=int(data["selected"]),
        validated=bool(data["validated"]),
        reason=data["reason"],
        eligible_ids=arrow("eligible_ids").column("id").to_pylist(),
        violations_table=arrow("violations"),
        expected_documents=arrow("expected_documents").to_pandas(),
        blast_radius_table=arrow("blast_radius"),
        by_rule=arrow("by_rule").to_pandas(),
        timings=tuple(
            RuleTiming(**{k: v for k, v in t.items() if k in fields}) for t in data["timings"]
        ),
        seconds=float(data["seconds"]),
    )
