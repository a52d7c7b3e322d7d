"""Column names the pipeline gives meanings of its own, which no key of a record may take.

Record keys are normalized to `\\w+` names (rule 2), so any of these could come from a record: a CTR with a
top-level `_source_key` would otherwise overwrite the lineage that breaks dedup ties, and one with
`filename` would collide with the column DuckDB's file readers add. Such a key is renamed as a key
collision is (`_2`, `_3`, ...), as if the pipeline's column came first, so its value is kept and counted.
"""

from __future__ import annotations

# Lineage the table adds to each row: the raw object its winning copy came from, and when that arrived.
SOURCE_KEY = "_source_key"
ARRIVED_AT = "_arrived_at"
LINEAGE = {SOURCE_KEY: "VARCHAR", ARRIVED_AT: "TIMESTAMP"}
# The table's partition field, day(initiationtimestamp); Iceberg refuses a column with a partition's name.
PARTITION_FIELD = "initiationtimestamp_day"
# Values of an undocumented field that do not fit its column's type go beside it, as JSON text.
VARIANT_SUFFIX = "__v_text"
# Columns DuckDB's Parquet and JSON readers add when asked (the table reader asks for them).
READER_COLUMNS = ("filename", "file_row_number", "file_index")
RESERVED = frozenset({SOURCE_KEY, ARRIVED_AT, PARTITION_FIELD, *READER_COLUMNS})


def is_reserved(name: str) -> bool:
    return name in RESERVED or name.endswith(VARIANT_SUFFIX)


def variant_column(name: str) -> str:
    return name + VARIANT_SUFFIX
