"""Split one Firehose object and normalize its keys in one compiled pass over the object.

The per-record path (`split.split_values`, then `normalize.normalize_keys`) decodes every record on its
own and rebuilds every dict in Python, several times the cost of parsing it. Here a small C scanner
(`_keyscan_c.c`) reads the object once: it finds where each record ends, applies the rule
`re.sub(r'\\W+', '', key.lower())` to every plain ASCII key as it copies it, and drops the whitespace
between tokens, so each record comes out as one NDJSON line that only has to be parsed once.

It is a fast path, never a second set of rules: every text it returns is parsed by orjson, and anything
it cannot vouch for (keys that collide, non-ASCII or escaped keys, keys that normalize to nothing, deep
nesting, integers beyond 64 bits, a huge record, junk between records, a broken string, or text orjson
rejects) is handed to the per-record path, one item at a time: a damaged record costs the rest of its
object nothing. Where the scanner was not compiled (`_keyscan.scan` is None), every item takes the
per-record path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import orjson

from ctr_assets.records._keyscan import scan
from ctr_assets.records.normalize import normalize_keys
from ctr_assets.records.split import (
    MAX_DEPTH,
    MAX_RECORD_BYTES,
    Record,
    Rejected,
    decode_at,
    split_values,
)

# The scanner returns about this many bytes of records per call, so their texts stay a small multiple of
# this in memory, not of the object.
WINDOW_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class NormalizedRecord:
    """A record with its keys normalized, its byte range in the object, and, when the bulk path made it,
    its NDJSON line, newline included (the record's own tokens, so not always what orjson would write)."""

    start: int
    end: int
    value: Any
    text: bytes | None
    collisions: int


def split_normalized(payload: bytes) -> Iterator[NormalizedRecord | Rejected]:
    """Every value of `payload` with its keys normalized, and every unusable byte range, in order; the same
    items as `split_values` followed by `normalize_keys`, found in bulk wherever the scanner can. Where it
    cannot, the per-record path takes the one item there and the scanner goes on after it."""
    if scan is None:
        yield from _per_record(payload, 0)
        return
    position = 0
    while position < len(payload):
        extents, position, handover = scan(payload, position, WINDOW_BYTES, MAX_DEPTH, MAX_RECORD_BYTES)
        for start, end, text in extents:
            value = _parsed(text)
            if value is not None:
                yield NormalizedRecord(start, end, value, text, 0)
                continue
            decoded = decode_at(payload, start)
            if not isinstance(decoded, Record) or decoded.end != end:
                position, handover = start, True
                break
            yield _normalized(decoded)
        if handover:
            piece = next(_per_record(payload, position), None)
            if piece is None:
                return
            yield piece
            position = piece.end


def _parsed(text: bytes | None) -> Any:
    """The record `text` holds, or None when it holds none (the per-record path then says why)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _per_record(payload: bytes, start: int) -> Iterator[NormalizedRecord | Rejected]:
    for piece in split_values(payload, start):
        yield piece if isinstance(piece, Rejected) else _normalized(piece)


def _normalized(record: Record) -> NormalizedRecord:
    value, collisions = normalize_keys(record.value)
    return NormalizedRecord(record.start, record.end, value, None, collisions)
