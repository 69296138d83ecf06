"""The output records' fields, in one place: names, kinds and nullability, from the contract's schemas.

The pyarrow schemas of :mod:`darkpool.contracts` (``LIQUIDITY_SCHEMA``,
``MARKET_SCHEMA``, and ``ALERT_SCHEMA`` of the optional ``alerts`` table, together
``PARQUET_TABLES``) are the source: a field's name
and order, and its kind (``int``, ``float``, ``str``, or ``time`` for the
timestamps, ISO-8601 strings on the wire), are read off them here. Serving's
validation and OpenAPI document, the analytics' Parquet reader, the pipeline's
Parquet sink and the test helpers take the mapping from this module instead of
keeping their own lists.

Nullability is not in the schemas (every Parquet column is optional, so files
stay readable whatever a writer did); :data:`NULLABLE_FIELDS` declares which
fields a pipeline record may leave null: the ratios of :mod:`darkpool.market`
that are None when nothing traded (VWAP, average trade size, dark share, HHI,
top venue and its share), the prices of an empty side, and the venue type of a
venue the registry does not know. Every other field is required.
"""

from __future__ import annotations

import pyarrow as pa

from darkpool.contracts import PARQUET_TABLES

LIQUIDITY = "liquidity"
MARKET = "market"
TABLES = (LIQUIDITY, MARKET)
# the alerts table (contracts.ALERT_SCHEMA) is written only by a pipeline run with --alerts, so a dataset
# may lack it: it is not in TABLES (every dataset has those), but its schema and fields are below
ALERTS = "alerts"
OPTIONAL_TABLES = (ALERTS,)
SCHEMAS: dict[str, pa.Schema] = {table: PARQUET_TABLES[table] for table in (*TABLES, *OPTIONAL_TABLES)}

KIND_INT = "int"
KIND_FLOAT = "float"
KIND_STR = "str"
KIND_TIME = "time"  # an ISO-8601 UTC string on the wire, a timestamp(ms, UTC) in Parquet

NULLABLE_FIELDS = frozenset({
    "vwap", "min_price", "max_price", "avg_trade_size", "dark_share", "hhi",
    "top_venue", "top_venue_share", "venue_type",
})


def kind_of(arrow_type: pa.DataType) -> str:
    """The record kind of a contract column type: int, float, str or time."""
    if pa.types.is_timestamp(arrow_type):
        return KIND_TIME
    if pa.types.is_integer(arrow_type):
        return KIND_INT
    if pa.types.is_floating(arrow_type):
        return KIND_FLOAT
    if pa.types.is_string(arrow_type):
        return KIND_STR
    raise TypeError(f"unsupported contract type {arrow_type}")


# table -> the record's field names, in contract order
FIELDS: dict[str, tuple[str, ...]] = {table: tuple(schema.names) for table, schema in SCHEMAS.items()}
# table -> field name -> kind
FIELD_KINDS: dict[str, dict[str, str]] = {
    table: {f.name: kind_of(f.type) for f in schema} for table, schema in SCHEMAS.items()
}
