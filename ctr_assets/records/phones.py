"""Customer phone numbers, masked or replaced by a keyed hash before they leave the flatten step.

Covered: `customerendpoint.address` (the caller, or the number dialled for an outbound contact or a
callback) and `transferredtoendpoint.address` (a transfer target, which may be an outside number), and
every copy of them that key normalization made (`CustomerEndpoint` and `customerEndpoint` in one record
become `customerendpoint` and `customerendpoint_2`; `Address` and `address`, `address` and `address_2`).
Not covered: `systemendpoint.address` (the centre's own number, kept for routing reports), and free-form
values that a contact flow may have put a number into (`attributes`, `tags`, segment attributes).
The key of the hash comes from the caller; this module never reads the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache, partial
from typing import Any, Callable

import orjson

from ctr_assets.records.normalize import unsuffixed

COVERED_ENDPOINTS = frozenset({"customerendpoint", "transferredtoendpoint"})
ADDRESS = "address"
MODES = ("keep", "mask", "hash")
VISIBLE_TAIL = 4  # characters left readable by `mask`, as on a card receipt
HASH_PREFIX = "hmac-sha256:"
HASH_HEX_DIGITS = 32
LETTER_OR_DIGIT = re.compile(r"[^\W_]")

Protect = Callable[[str], str]


def mask_address(address: str) -> str:
    """Every letter and digit but the last four becomes `*` (`+15551234567` -> `+*******4567`); an
    address of four characters or fewer is masked whole."""
    visible = VISIBLE_TAIL if len(address) > VISIBLE_TAIL else 0
    head, tail = address[: len(address) - visible], address[len(address) - visible :]
    return LETTER_OR_DIGIT.sub("*", head) + tail


def hash_address(address: str, key: bytes) -> str:
    """A pseudonym: the same number gives the same value (callers can still be counted and joined), and
    without the key the number cannot be recovered by hashing every possible number."""
    digest = hmac.new(key, address.encode("utf-8"), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:HASH_HEX_DIGITS]


def phone_protector(mode: str, key: bytes = b"") -> Protect | None:
    """The function applied to each covered address for a `CTR_PHONE_NUMBERS` mode; None keeps them."""
    if mode == "keep":
        return None
    if mode == "mask":
        return mask_address
    if mode == "hash":
        if not key:
            raise ValueError("hashing phone numbers needs a key")
        return partial(hash_address, key=key)  # a partial, not a lambda: worker processes receive it
    raise ValueError(f"unknown phone number mode {mode!r}; expected one of {', '.join(MODES)}")


def protect_phone_numbers(record: dict, protect: Protect) -> None:
    """Apply `protect` in place to every covered address of one normalized, conformed record: under each
    top-level key that is a covered endpoint or a copy of one, every value under a key that is `address`
    or a copy of it, at any depth. The first copy's address is text by then (a number sent as a JSON number
    was widened to its digits); a copy is not held to the documented types, so its numbers are protected
    as their JSON text, and every text inside an object or list there too."""
    for endpoint in _covered_endpoints(tuple(record)):
        record[endpoint] = _protect_addresses(record[endpoint], protect)


@lru_cache(maxsize=1 << 12)
def _covered_endpoints(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The keys among a record's that are covered endpoints or copies of them: records come in a few
    shapes, so this is one lookup per record."""
    return tuple(key for key in keys if unsuffixed(key) in COVERED_ENDPOINTS)


def _protect_addresses(value: Any, protect: Protect) -> Any:
    if type(value) is dict:
        return {key: (_protect_all if unsuffixed(key) == ADDRESS else _protect_addresses)(item, protect)
                for key, item in value.items()}
    if type(value) is list:
        return [_protect_addresses(item, protect) for item in value]
    return value


def _protect_all(value: Any, protect: Protect) -> Any:
    kind = type(value)
    if kind is str:
        return protect(value)
    if kind is int or kind is float:
        return protect(orjson.dumps(value).decode())
    if kind is dict:
        return {key: _protect_all(item, protect) for key, item in value.items()}
    if kind is list:
        return [_protect_all(item, protect) for item in value]
    return value  # null and booleans hold no number
