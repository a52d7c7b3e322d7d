"""Column types as small trees, so the table's schema can be pinned, compared, merged and recorded.

A type is a DuckDB scalar name (`"VARCHAR"`), a struct (`{"field": type, ...}`) or a list (`[type]`).
The trees are plain JSON, which is also how the catalog stores them.
"""

from __future__ import annotations

from typing import Any, Iterable

from ctr_assets.records.columns import variant_column
from ctr_assets.records.fields import ANY_FIELD, KNOWN_FIELDS, STRING, TEXT

Type = Any  # str | dict[str, Type] | list[Type]

NULL = "NULL"  # what detection says of a field that held nothing but nulls
# Objects and lists nested deeper than this are kept as JSON text: Parquet readers refuse schemas nested
# much deeper (pyarrow stops at 100 levels, and a list takes two), and a CTR nests 4.
MAX_COLUMN_NESTING = 20

def from_duckdb(duck_type: Any) -> Type:
    """A tree from a `duckdb.DuckDBPyType`."""
    if duck_type.id == "struct":
        return {name: from_duckdb(child) for name, child in duck_type.children}
    if duck_type.id == "list":
        return [from_duckdb(duck_type.children[0][1])]
    if duck_type.id == "null":  # its type text is the quoted '"NULL"'
        return NULL
    return str(duck_type)


def relation_schema(relation: Any) -> dict[str, Type]:
    """The column trees of a DuckDB relation."""
    return {name: from_duckdb(kind) for name, kind in zip(relation.columns, relation.types)}


def render(kind: Type) -> str:
    """DuckDB type text for a tree."""
    if isinstance(kind, dict):
        return "STRUCT(" + ", ".join(f"{quote(name)} {render(sub)}" for name, sub in kind.items()) + ")"
    if isinstance(kind, list):
        return f"{render(kind[0])}[]"
    return STRING if kind == TEXT else kind


def quote(name: str) -> str:
    """An SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_text(value: str) -> str:
    """An SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    """An SQL list of string literals."""
    return "[" + ", ".join(sql_text(value) for value in values) + "]"


def pin(detected: dict[str, Type], known: dict[str, Type] = KNOWN_FIELDS) -> dict[str, Type]:
    """The types to read records with: documented types for known fields, the policy of `_pin_unknown` for
    the rest."""
    wildcard = known.get(ANY_FIELD)
    pinned = {name: _pin_field(detected.get(name), sub) for name, sub in known.items() if name != ANY_FIELD}
    for name, kind in detected.items():
        if name not in pinned:
            pinned[name] = STRING if wildcard is not None else _pin_unknown(kind)
    # An object known only as "any fields" that has none yet is left out until a record brings one, and so
    # is an undocumented field that held only nulls.
    return {name: kind for name, kind in pinned.items() if kind != {} and kind is not None}


def _pin_field(detected: Type | None, known: Type) -> Type:
    if isinstance(known, dict):
        return pin(detected if isinstance(detected, dict) else {}, known)
    if isinstance(known, list):
        inner = detected[0] if isinstance(detected, list) else None
        return [_pin_field(inner, known[0])]
    return STRING if known == TEXT else known


def _pin_unknown(kind: Type) -> Type | None:
    """Undocumented fields: objects stay objects and lists stay lists, so `x.y` works in SQL, but every
    scalar is text from the start (a number or boolean as its JSON text). A table column cannot change its
    type later (Iceberg widens nothing to text), so guessing BIGINT from a first batch would leave no
    lossless place for the "12a" or 1.5 of a later one. A top-level field that held only nulls gets no
    column yet; a null-only field inside an undocumented object is text, as any later scalar of it would
    be (Connect's `Campaign.CampaignId` is often null in a whole hour); an object with no field is kept as
    its JSON text, and so is a value nested deeper than `MAX_COLUMN_NESTING`."""
    if _nesting(kind) > MAX_COLUMN_NESTING:
        return STRING
    if isinstance(kind, dict):
        return {name: _pin_unknown(sub) or STRING for name, sub in kind.items()} or STRING
    if isinstance(kind, list):
        return [_pin_unknown(kind[0]) or STRING]
    return None if kind == NULL else STRING


def _nesting(kind: Type) -> int:
    if isinstance(kind, dict):
        return 1 + max(map(_nesting, kind.values()), default=0)
    if isinstance(kind, list):
        return 1 + _nesting(kind[0])
    return 0


def evolve(table: dict[str, Type], batch: dict[str, Type]) -> tuple[dict[str, Type], list[str]]:
    """The table's schema once a batch read with `batch` types is in it, and the batch's top-level columns
    whose values cannot take their column's type. New columns and struct fields are added; nothing is
    retyped. A text column takes anything (objects as their JSON text). A conflict (an object where the
    table has a list, text where it has an object, ...) sends that batch's values of the column to
    `<column>__v_text`, as JSON text, leaving the column itself null for those rows."""
    evolved, conflicts = dict(table), []
    for name, kind in batch.items():
        if name not in table:
            evolved[name] = kind
        elif (widened := _widen(table[name], kind)) is None:
            conflicts.append(name)
            evolved.setdefault(variant_column(name), STRING)
        else:
            evolved[name] = widened
    return evolved, conflicts


def _widen(column: Type, values: Type) -> Type | None:
    """`column` with the fields `values` adds, or None when `values` cannot be stored in it."""
    if column == STRING or column == values:
        return column
    if isinstance(column, dict) and isinstance(values, dict):
        fields = dict(column)
        for name, kind in values.items():
            if name not in column:
                fields[name] = kind
            elif (widened := _widen(column[name], kind)) is None:
                return None
            else:
                fields[name] = widened
        return fields
    if isinstance(column, list) and isinstance(values, list):
        inner = _widen(column[0], values[0])
        return None if inner is None else [inner]
    return None


def cast_to(expr: str, kind: Type, target: Type) -> str:
    """SQL giving `expr`, of type `kind`, the type `target`: an object or list bound for text becomes its
    JSON text, structs are cast field by field (a field `target` lacks is left out)."""
    if kind == target:
        return expr
    if target == STRING:
        return f"CAST(to_json({expr}) AS VARCHAR)" if isinstance(kind, (dict, list)) else f"CAST({expr} AS VARCHAR)"
    if isinstance(kind, dict) and isinstance(target, dict):
        fields = ", ".join(f"{quote(name)} := {cast_to(f'{expr}.{quote(name)}', sub, target[name])}"
                           for name, sub in kind.items() if name in target)
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({fields}) END"
    if isinstance(kind, list) and isinstance(target, list):
        return f"list_transform({expr}, lambda item: {cast_to('item', kind[0], target[0])})"
    return f"CAST({expr} AS {render(target)})"


def column_paths(schema: dict[str, Type], prefix: str = "") -> dict[str, str]:
    """Every column and struct field as a dotted path with its type text (lists of structs use `[]`)."""
    paths: dict[str, str] = {}
    for name, kind in schema.items():
        path = f"{prefix}{name}"
        paths[path] = render(kind)
        inner = kind[0] if isinstance(kind, list) else kind
        if isinstance(inner, dict):
            paths.update(column_paths(inner, f"{path}[]." if isinstance(kind, list) else f"{path}."))
    return paths
