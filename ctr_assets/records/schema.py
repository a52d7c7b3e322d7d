"""Column types as small trees, so the table's schema can be pinned, compared, merged and recorded.

A type is a DuckDB scalar name (`"VARCHAR"`), a struct (`{"field": type, ...}`) or a list (`[type]`).
The trees are plain JSON, which is also how the catalog stores them.
"""

from __future__ import annotations

from typing import Any

from ctr_assets.records.fields import ANY_FIELD, KNOWN_FIELDS, STRING, TEXT

Type = Any  # str | dict[str, Type] | list[Type]

# Auto-detection guesses these from string contents; unknown fields keep their text instead, so a value
# such as "2026-11-27" in a contact attribute is never silently re-typed.
_GUESSED_FROM_TEXT = {"DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "UUID", "JSON", "NULL"}
# Integers beyond 64 bits are detected as these, but Parquet has no 128-bit integer (DuckDB would write
# DOUBLE and lose digits), so unknown fields holding them keep their exact text.
_TOO_WIDE_FOR_PARQUET = {"HUGEINT", "UHUGEINT"}
_NUMERIC_WIDENING = {frozenset({"BIGINT", "DOUBLE"}): "DOUBLE", frozenset({"BIGINT", "UBIGINT"}): "DOUBLE"}


def from_duckdb(duck_type: Any) -> Type:
    """A tree from a `duckdb.DuckDBPyType`."""
    if duck_type.id == "struct":
        return {name: from_duckdb(child) for name, child in duck_type.children}
    if duck_type.id == "list":
        return [from_duckdb(duck_type.children[0][1])]
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
    return '"' + name.replace('"', '""') + '"'


def pin(detected: dict[str, Type], known: dict[str, Type] = KNOWN_FIELDS) -> dict[str, Type]:
    """The types to read records with: documented types for known fields, cautious inference for the rest."""
    wildcard = known.get(ANY_FIELD)
    pinned = {name: _pin_field(detected.get(name), sub) for name, sub in known.items() if name != ANY_FIELD}
    for name, kind in detected.items():
        if name not in pinned:
            pinned[name] = STRING if wildcard is not None else _pin_unknown(kind)
    # An object known only as "any fields" that has none yet is left out until a record brings one.
    return {name: kind for name, kind in pinned.items() if kind != {}}


def _pin_field(detected: Type | None, known: Type) -> Type:
    if isinstance(known, dict):
        return pin(detected if isinstance(detected, dict) else {}, known)
    if isinstance(known, list):
        inner = detected[0] if isinstance(detected, list) else None
        return [_pin_field(inner, known[0])]
    return STRING if known == TEXT else known


def _pin_unknown(kind: Type) -> Type:
    if isinstance(kind, dict):
        return {name: _pin_unknown(sub) for name, sub in kind.items()} if kind else STRING
    if isinstance(kind, list):
        return [_pin_unknown(kind[0])]
    as_text = kind in _GUESSED_FROM_TEXT or kind in _TOO_WIDE_FOR_PARQUET or kind.startswith(("MAP(", "UNION("))
    return STRING if as_text else kind


def merge(old: Type, new: Type) -> Type:
    """The narrowest type that holds every value of both without loss (a conflict widens to VARCHAR)."""
    if old == new:
        return old
    if isinstance(old, dict) and isinstance(new, dict):
        merged = dict(old)
        for name, kind in new.items():
            merged[name] = merge(old[name], kind) if name in old else kind
        return merged
    if isinstance(old, list) and isinstance(new, list):
        return [merge(old[0], new[0])]
    if isinstance(old, str) and isinstance(new, str):
        return _NUMERIC_WIDENING.get(frozenset({old, new}), STRING)
    return STRING


def fits(kind: Type, target: Type) -> bool:
    """True when a Parquet column of `kind` reads as `target` by name alone (struct fields may be missing)."""
    if isinstance(kind, dict) and isinstance(target, dict):
        return all(name in target and fits(sub, target[name]) for name, sub in kind.items())
    if isinstance(kind, list) and isinstance(target, list):
        return fits(kind[0], target[0])
    return kind == target


def cast_expression(expr: str, kind: Type, target: Type) -> str:
    """SQL turning `expr` of type `kind` into `target`; only conflicts need more than a plain cast."""
    if fits(kind, target):
        return expr
    if target == STRING:
        if isinstance(kind, (dict, list)):
            return f"CAST(to_json({expr}) AS VARCHAR)"
        return f"CAST({expr} AS VARCHAR)"
    if isinstance(kind, dict) and isinstance(target, dict):
        fields = ", ".join(
            f"{quote(name)} := {cast_expression(f'{expr}.{quote(name)}', sub, target[name])}"
            for name, sub in kind.items()
        )
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({fields}) END"
    if isinstance(kind, list) and isinstance(target, list):
        return f"list_transform({expr}, lambda item: {cast_expression('item', kind[0], target[0])})"
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
