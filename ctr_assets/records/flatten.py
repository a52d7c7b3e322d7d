"""One raw Firehose object in, normalized NDJSON and quarantine entries out (the original Lambda's job).

Every value found in the object is counted once and ends in exactly one of the two outputs, so for each
object `records_in == records_written + records_quarantined` (design rule 6). Unusable byte ranges count
as one quarantined item each.
"""

from __future__ import annotations

import base64
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from ctr_assets.records.bulk import split_normalized
from ctr_assets.records.fields import FieldProblem, conform_changed
from ctr_assets.records.normalize import free_reserved_names
from ctr_assets.records.phones import Protect, protect_phone_numbers
from ctr_assets.records.split import Rejected

GZIP_MAGIC = b"\x1f\x8b"
GZIP_CHUNK = 1 << 16


@dataclass
class FlattenStats:
    """What happened to one raw object."""

    source_key: str
    bytes_in: int = 0
    records_in: int = 0
    records_written: int = 0
    records_quarantined: int = 0
    collisions: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: "FlattenStats") -> None:
        self.bytes_in += other.bytes_in
        self.records_in += other.records_in
        self.records_written += other.records_written
        self.records_quarantined += other.records_quarantined
        self.collisions += other.collisions
        self.reasons.update(other.reasons)


def flatten_object(
    data: bytes, source_key: str, flat_out: BinaryIO, quarantine_out: BinaryIO, protect_phone: Protect | None = None
) -> FlattenStats:
    """Split, normalize and type-check one raw object, writing one line per record to `flat_out`, with
    customer phone numbers passed through `protect_phone` when given. Quarantine keeps the exact bytes
    (numbers included, like raw/ itself), because replaying them later needs every byte."""
    stats = FlattenStats(source_key=source_key, bytes_in=len(data))

    def quarantine(start: int, end: int, reason: str, detail: str, content: bytes, compressed: bool) -> None:
        stats.records_quarantined += 1
        stats.reasons[reason] += 1
        quarantine_out.write(quarantine_entry(source_key, start, end, reason, detail, content, compressed))

    payload, gzip_error = decompress(data)
    for piece in split_normalized(payload):
        stats.records_in += 1
        if isinstance(piece, Rejected):
            content = payload[piece.start : piece.end]
            quarantine(piece.start, piece.end, piece.reason, piece.detail, content, False)
            continue
        record = piece.value
        try:
            rewritten = conform_changed(record)
        except FieldProblem as problem:
            content = payload[piece.start : piece.end]
            quarantine(piece.start, piece.end, problem.reason, str(problem), content, False)
            continue
        if protect_phone is not None:
            protect_phone_numbers(record, protect_phone)
            rewritten = True
        record, renamed = free_reserved_names(record)
        rewritten = rewritten or bool(renamed)
        stats.collisions += piece.collisions + renamed
        stats.records_written += 1
        as_parsed = piece.text is not None and not rewritten
        flat_out.write(piece.text if as_parsed else orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    if gzip_error is not None:
        start, detail = gzip_error
        stats.records_in += 1
        quarantine(start, len(data), "invalid_gzip", detail, data[start:], True)
    return stats


def decompress(data: bytes) -> tuple[bytes, tuple[int, str] | None]:
    """Gunzip (all members) when `data` is gzip; a corrupt or cut stream keeps what decoded before it."""
    if not data.startswith(GZIP_MAGIC):
        return data, None
    parts: list[bytes] = []
    member_start = 0
    while member_start < len(data):
        inflater = zlib.decompressobj(wbits=31)
        position = member_start
        try:
            while position < len(data) and not inflater.eof:
                parts.append(inflater.decompress(data[position : position + GZIP_CHUNK]))
                position += GZIP_CHUNK
        except zlib.error as error:
            return b"".join(parts), (member_start, f"corrupt gzip stream: {error}")
        if not inflater.eof:
            return b"".join(parts), (member_start, "gzip stream ends before its end marker")
        member_start = min(position, len(data)) - len(inflater.unused_data)
        if not data.startswith(GZIP_MAGIC, member_start):
            if data[member_start:].strip(b"\0"):
                return b"".join(parts), (member_start, "bytes after the last gzip member")
            break
    return b"".join(parts), None


def quarantine_entry(
    source_key: str, start: int, end: int, reason: str, detail: str, content: bytes, compressed: bool
) -> bytes:
    """One NDJSON line that keeps the unusable bytes exactly, with where they came from and why."""
    entry = {"source_key": source_key, "offset": start, "length": end - start, "reason": reason, "detail": detail}
    if compressed:
        entry["compressed"] = True
    try:
        entry["data"] = content.decode("utf-8")
    except UnicodeDecodeError:
        entry["data_base64"] = base64.b64encode(content).decode("ascii")
    return orjson.dumps(entry) + b"\n"
