"""Split one Firehose object and normalize its keys with array operations over the whole object.

The per-record path (`split.split_values`, then `normalize.normalize_keys`) decodes every record on its
own and rebuilds every dict in Python, several times the cost of parsing it. Here the object is read once
as an array: quotes (minus escaped ones) delimit strings, the brackets outside strings give each record's
extent, a string followed by `:` is a key, and the rule `re.sub(r'\\W+', '', key.lower())` on an ASCII key
is a byte-wise lower-casing plus deleting non-word bytes, done for every key of the object at once.

It is a fast path, never a second set of rules: every record it produces is then parsed and must
re-encode to exactly its normalized text (which also catches collisions: a repeated key does not
survive the round trip), and anything it cannot vouch for (a non-ASCII or escaped key, a key that
normalizes to nothing, deep nesting, a huge record, junk between records, a broken string) is handed to
the per-record path at that record, or from that point on when the extents after it cannot be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import orjson

from ctr_assets.records.normalize import normalize_keys
from ctr_assets.records.split import MAX_DEPTH, MAX_RECORD_BYTES, WHITESPACE, Record, Rejected, decode_at, split_values

QUOTE, BACKSLASH, COLON, UNDERSCORE = ord('"'), ord("\\"), ord(":"), ord("_")
# `[` and `]` are `{` and `}` without bit 5, so one OR folds both kinds of bracket together.
CASE_BIT, OPEN_BRACE, CLOSE_BRACE = 0x20, ord("{"), ord("}")
# Objects are read this much at a time; each window's arrays take about eight times its size.
WINDOW_BYTES = 1024 * 1024
# Fewer deletions than this fraction of the object are cut out as slices, more with a boolean mask.
SLICE_DELETIONS_BELOW = 1 / 256


@dataclass(frozen=True, slots=True)
class NormalizedRecord:
    """A record with its keys normalized, its byte range in the object, and, when the bulk path made it,
    its normalized compact JSON text (what orjson writes for `value`)."""

    start: int
    end: int
    value: Any
    text: bytes | None
    collisions: int


def split_normalized(payload: bytes) -> Iterator[NormalizedRecord | Rejected]:
    """Every value of `payload` with its keys normalized, and every unusable byte range, in order; the same
    items as `split_values` followed by `normalize_keys`, found in bulk wherever that can be verified.

    The object is read in windows of about WINDOW_BYTES cut where one record likely ends, so the arrays
    stay a few times a window, not a few times the object."""
    window_start = 0
    while window_start < len(payload):
        window_end = _window_end(payload, window_start)
        window = payload if window_end - window_start == len(payload) else payload[window_start:window_end]
        extents, exact_from = _bulk_extents(window)
        for start, end, text in extents:
            start, end = window_start + start, window_start + end
            value = _verified(text)
            if value is not None:
                yield NormalizedRecord(start, end, value, text, 0)
                continue
            decoded = decode_at(payload, start)
            if not isinstance(decoded, Record) or decoded.end != end:
                yield from _per_record(payload, start)
                return
            yield _normalized(decoded)
        if exact_from is not None:  # includes a window cut inside a record: a rare `}{` in a value
            yield from _per_record(payload, window_start + exact_from)
            return
        window_start = window_end


def _window_end(payload: bytes, start: int) -> int:
    """Just after the first `}` at least WINDOW_BYTES past `start` that the next record's `{` follows
    (directly, as Firehose writes them, or after a newline), or the end of the object."""
    ends = [payload.find(separator, start + WINDOW_BYTES) for separator in (b"}{", b"}\n{")]
    found = [end for end in ends if end != -1]
    return min(found) + 1 if found else len(payload)


def _verified(text: bytes | None) -> Any:
    """The parsed record when `text` is exactly what orjson writes for it, else None."""
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if orjson.dumps(value) == text else None


def _per_record(payload: bytes, start: int) -> Iterator[NormalizedRecord | Rejected]:
    for piece in split_values(payload, start):
        yield piece if isinstance(piece, Rejected) else _normalized(piece)


def _normalized(record: Record) -> NormalizedRecord:
    value, collisions = normalize_keys(record.value)
    return NormalizedRecord(record.start, record.end, value, None, collisions)


def _bulk_extents(payload: bytes) -> tuple[list[tuple[int, int, bytes | None]], int | None]:
    """(start, end, normalized text or None) for each record found in bulk, and the offset from which the
    per-record path must take over (None when the bulk records reach the end of the object).

    The passes over the whole object are comparisons and bit operations in numpy; everything else works
    on the few positions that matter: quotes, brackets, keys."""
    data = np.frombuffer(payload, dtype=np.uint8)
    folded = data | CASE_BIT
    marks = np.flatnonzero((data == QUOTE) | (folded == OPEN_BRACE) | (folded == CLOSE_BRACE))
    is_bracket = data[marks] != QUOTE
    is_quote = ~is_bracket
    if b"\\" in payload:
        _drop_escaped(payload, marks, is_quote)
    quotes = marks[is_quote]
    # A bracket after an odd number of quotes is inside a string.
    outside = (np.cumsum(is_quote) & 1) == 0
    starts, ends, deep, exact_from = _record_extents(payload, data, quotes, marks[is_bracket & outside])
    if not len(starts):
        return [], exact_from
    trusted = quotes[: np.searchsorted(quotes, ends[-1])]
    opens, closes = trusted[0::2], trusted[1::2]
    is_key = data[closes + 1] == COLON
    normalized, new_offset, unusable = _normalize_keys(data, folded, opens[is_key], closes[is_key])
    unusable = np.concatenate([unusable, deep])
    refused = np.zeros(len(starts), dtype=bool)
    refused[np.searchsorted(ends, unusable)] = True
    refused |= ends - starts >= MAX_RECORD_BYTES
    new_starts, new_ends = new_offset(starts).tolist(), new_offset(ends + 1).tolist()
    extents = [
        (start, end + 1, None if skip else normalized[new_start:new_end])
        for start, end, skip, new_start, new_end in zip(
            starts.tolist(), ends.tolist(), refused.tolist(), new_starts, new_ends
        )
    ]
    return extents, exact_from


def _drop_escaped(payload: bytes, marks: np.ndarray, is_quote: np.ndarray) -> None:
    """Unmark the quotes that do not delimit strings: those after an odd run of backslashes."""
    after_backslash = (marks > 0) & (np.frombuffer(payload, dtype=np.uint8)[marks - 1] == BACKSLASH)
    for index in np.flatnonzero(is_quote & after_backslash).tolist():
        quote = int(marks[index])
        before = quote - 1
        while before >= 0 and payload[before] == BACKSLASH:
            before -= 1
        if (quote - 1 - before) % 2:
            is_quote[index] = False


def _record_extents(
    payload: bytes, data: np.ndarray, quotes: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """Top-level objects from the brackets outside strings (`positions`): first and last byte of each,
    positions nested deeper than MAX_DEPTH, and where the extents stop being trustworthy (None: they
    cover the object)."""
    opening = (data[positions] | CASE_BIT) == OPEN_BRACE
    depth = np.cumsum(np.where(opening, 1, -1))
    ends = positions[depth == 0]
    starts = positions[(depth == 1) & opening]
    whole = True
    if len(depth) and depth.min() < 0:  # a closing bracket with nothing open: trust only what comes before it
        first_bad = positions[np.argmax(depth < 0)]
        ends, starts, whole = ends[ends < first_bad], starts[starts < first_bad], False
    if len(starts) > len(ends):  # the last record never closes
        starts, whole = starts[: len(ends)], False
    # Each record must hold whole strings, be an object, and follow the one before after whitespace only.
    record_quotes = np.searchsorted(quotes, ends) - np.searchsorted(quotes, starts)
    good = ((record_quotes & 1) == 0) & (data[starts] == OPEN_BRACE) & _gaps_are_whitespace(payload, starts, ends)
    if not good.all():
        first = int(np.argmin(good))
        starts, ends, whole = starts[:first], ends[:first], False
    # The per-record path takes over right after the last good record, where it would have been itself.
    after_last = int(ends[-1]) + 1 if len(ends) else 0
    exact_from = None if whole and not payload[after_last:].strip(WHITESPACE) else after_last
    deep = positions[depth > MAX_DEPTH]
    return starts, ends, deep[deep <= (ends[-1] if len(ends) else -1)], exact_from


def _gaps_are_whitespace(payload: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each record, whether only whitespace lies between it and the one before (or the object's start)."""
    previous_ends = np.concatenate([[-1], ends[:-1]]) + 1
    ok = previous_ends == starts
    for index in np.flatnonzero(~ok).tolist():
        ok[index] = not payload[previous_ends[index] : starts[index]].strip(WHITESPACE)
    return ok


def _normalize_keys(data: np.ndarray, folded: np.ndarray, opens: np.ndarray, closes: np.ndarray):
    """Apply the key rule to every plain ASCII key at once. Returns the normalized bytes, a function from
    an original offset to the normalized one, and positions whose record the bulk path must leave alone."""
    # Runs of bytes alternately outside and inside keys, laid out densely in one pass.
    bounds = np.empty(2 * len(opens) + 2, dtype=np.int64)
    bounds[0], bounds[1:-1:2], bounds[2:-1:2], bounds[-1] = 0, opens + 1, closes, len(data)
    alternating = np.zeros(len(bounds) - 1, dtype=bool)
    alternating[1::2] = True
    in_key = np.repeat(alternating, np.diff(bounds))
    letter = (folded - ord("a")) < 26  # uint8 arithmetic wraps below `a`, so this is a-z and A-Z
    capital = letter & (data < ord("a"))
    capital &= in_key
    out = data | capital.view(np.uint8) * np.uint8(CASE_BIT)  # a multiply vectorizes; a shift does not
    odd = ~(letter | ((data - ord("0")) < 10) | (data == UNDERSCORE))
    odd &= in_key
    unusable = opens[closes == opens + 1]  # an empty key would need a made-up name
    odd_positions = np.flatnonzero(odd)
    if not len(odd_positions):
        return out.tobytes(), lambda offsets: offsets, unusable
    odd_bytes = data[odd_positions]
    plain = (odd_bytes >= 32) & (odd_bytes < 128) & (odd_bytes != BACKSLASH)
    unusable = np.concatenate([unusable, odd_positions[~plain]])  # Unicode case rules, escapes, invalid JSON
    deleted = odd_positions[plain]
    # A key whose every byte is deleted would need a made-up name.
    key_of_deleted, deletions = np.unique(np.searchsorted(opens, deleted) - 1, return_counts=True)
    emptied = key_of_deleted[deletions == (closes - opens - 1)[key_of_deleted]]
    unusable = np.concatenate([unusable, opens[emptied]])
    return _without(out, deleted), lambda offsets: offsets - np.searchsorted(deleted, offsets), unusable


def _without(data: np.ndarray, deleted: np.ndarray) -> bytes:
    """`data` as bytes minus the bytes at the sorted positions `deleted`."""
    if len(deleted) >= len(data) * SLICE_DELETIONS_BELOW:
        keep = np.ones(len(data), dtype=bool)
        keep[deleted] = False
        return data[keep].tobytes()
    text = data.tobytes()
    cuts = deleted.tolist()
    return b"".join(text[start + 1 : end] for start, end in zip([-1, *cuts], [*cuts, len(text)]))
