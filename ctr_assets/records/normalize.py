"""Key normalization: the original Lambda's rule, made lossless.

Every key at every depth becomes `re.sub(r'\\W+', '', key.lower())`. When two keys of one object land on
the same name, the first keeps it and the others get `_2`, `_3`, ... in input order (skipping names
already taken), and each such rename is counted. Repeated keys in the raw JSON are treated the same way.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from ctr_assets.records.split import DuplicateKeys

NON_WORD = re.compile(r"\W+")
EMPTY_KEY_NAME = "unnamed"


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
    if kind is dict or kind is DuplicateKeys:
        pairs = value.items() if kind is dict else value
        out: dict[str, Any] = {}
        for key, item in pairs:
            name = normalize_key(key)
            if name in out:
                name = _free_name(name, out)
                collisions[0] += 1
            item_kind = type(item)
            out[name] = _normalize(item, collisions) if item_kind in _CONTAINERS else item
        return out
    if kind is list:
        return [_normalize(item, collisions) if type(item) in _CONTAINERS else item for item in value]
    return value


_CONTAINERS = frozenset({dict, list, DuplicateKeys})


def _free_name(name: str, taken: dict[str, Any]) -> str:
    suffix = 2
    while f"{name}_{suffix}" in taken:
        suffix += 1
    return f"{name}_{suffix}"
