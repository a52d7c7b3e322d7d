"""Customer phone numbers, masked or replaced by a keyed hash before they leave the flatten step.

Covered: `customerendpoint.address` (the caller, or the number dialled for an outbound contact or a
callback) and `transferredtoendpoint.address` (a transfer target, which may be an outside number). Not
covered: `systemendpoint.address` (the centre's own number, kept for routing reports), and free-form
values that a contact flow may have put a number into (`attributes`, `tags`, segment attributes).
The key of the hash comes from the caller; this module never reads the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import partial
from typing import Callable

PHONE_FIELDS = (("customerendpoint", "address"), ("transferredtoendpoint", "address"))
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
    """Apply `protect` in place to every covered address of one conformed record (addresses are text
    by then: a number sent as a JSON number was widened to its digits)."""
    for endpoint, field in PHONE_FIELDS:
        holder = record.get(endpoint)
        if type(holder) is dict and type(holder.get(field)) is str:
            holder[field] = protect(holder[field])
