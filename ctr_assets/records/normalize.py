"""Key normalization: the original Lambda's rule, made lossless.

Every key at every depth becomes `re.sub(r'\\W+', '', key.lower())`. When two keys of one object land on
the same name, the first keeps it and the others get `_2`, `_3`, ... in input order (skipping names
already taken, including names other keys of the object normalize to), and each such rename is counted.
Repeated keys in the raw JSON are treated the same way. Top-level names the pipeline reserves for
columns of its own (`columns.py`) are never given to a record's key: such a key takes a suffix too.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from ctr_assets.records.columns import RESERVED, is_reserved
from ctr_assets.records.split import DuplicateKeys

NON_WORD = re.compile(r"\W+")
EMPTY_KEY_NAME = "unnamed"
# The suffixes `_free_name` appends (`_2`, `_3`, ...), as many as a name took.
COLLISION_SUFFIXES = re.compile(r"(?:_(?:[2-9]|[1-9][0-9]+))+$")


@lru_cache(maxsize=1 << 16)
def normalize_key(key: str) -> str:
    """The original rule; keys repeat across millions of records, so each distinct key is done once."""
    return NON_WORD.sub("", key.lower()) or EMPTY_KEY_NAME


def normalize_keys(value: Any) -> tuple[Any, int]:
    """Return `value` with every object key normalized, and how many keys had to take a suffix."""
    collisions = [0]
    return _normalize(value, collisions), collisions[0]


def _normalize(value: Any, collisions: list[int]) -> Any:
    kind = type(value)
    if kind is list:
        return [_normalize(item, collisions) if type(item) in _CONTAINERS else item for item in value]
    if kind is dict:
        keys, items = tuple(value), value.values()
    elif kind is DuplicateKeys:
        keys, items = tuple(key for key, _ in value), [item for _, item in value]
    else:
        return value
    names, suffixed = _names_of(keys)
    collisions[0] += suffixed
    return dict(zip(names, [_normalize(item, collisions) if type(item) in _CONTAINERS else item for item in items]))


_CONTAINERS = frozenset({dict, list, DuplicateKeys})


@lru_cache(maxsize=1 << 16)
def _names_of(keys: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
    """The names one object's keys take, in order, and how many took a suffix. Cached per key tuple:
    CTR objects come in a few shapes repeated millions of times, so an object costs one lookup."""
    names = [normalize_key(key) for key in keys]
    taken = set(names)
    if len(taken) == len(names):
        return tuple(names), 0
    unique = _suffix_repeats(names, taken)
    return tuple(unique), sum(1 for name, given in zip(names, unique) if name != given)


def _suffix_repeats(names: list[str], taken: set[str]) -> list[str]:
    """Later repeats of a name take the first free suffix; a name some key normalizes to is never free,
    so a real `a_2` keeps its own name and its meaning across records."""
    seen: set[str] = set()
    unique = []
    for name in names:
        if name in seen:
            name = _free_name(name, taken)
            taken.add(name)
        seen.add(name)
        unique.append(name)
    return unique


@lru_cache(maxsize=1 << 16)
def unsuffixed(name: str) -> str:
    """The name without the suffixes a collision gives (`address_2` -> `address`), so a rule about a field
    reaches every copy of it. A key that had such a suffix in the input reads the same: after
    normalization nothing tells them apart. Cached, as `normalize_key` is."""
    return COLLISION_SUFFIXES.sub("", name)


def _free_name(name: str, taken: set[str]) -> str:
    suffix = 2
    while f"{name}_{suffix}" in taken:
        suffix += 1
    return f"{name}_{suffix}"


def free_reserved_names(record: dict) -> tuple[dict, int]:
    """The record with any top-level key that a reserved name (`columns.RESERVED`) renamed as a collision
    would rename it, and how many were renamed. Cached per key tuple, like `_names_of`: a record costs one
    lookup."""
    renames = _reserved_renames(tuple(record))
    if not renames:
        return record, 0
    return {renames.get(name, name): value for name, value in record.items()}, len(renames)


@lru_cache(maxsize=1 << 12)
def _reserved_renames(keys: tuple[str, ...]) -> dict[str, str]:
    taken = set(keys) | RESERVED
    renames = {}
    for name in keys:
        if is_reserved(name):
            renames[name] = _free_name(name, taken)
            taken.add(renames[name])
    return renames
