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
GZIP_CUT_SHORT = "gzip stream ends before its end marker"


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

    payload, gzip_damage = decompress(data)
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
    for start, end, detail in gzip_damage:
        stats.records_in += 1
        quarantine(start, end, "invalid_gzip", detail, data[start:end], True)
    return stats


def decompress(data: bytes) -> tuple[bytes, list[tuple[int, int, str]]]:
    """Gunzip every member when `data` is gzip. Damage (a corrupt or cut member, bytes that are no member)
    is reported as (start, end, why), from where it starts to the next member that inflates, and the
    members after it are read: one bad member costs only its own records. A member cut short keeps what it
    decoded; a corrupt one keeps nothing, since inflating it may have produced wrong bytes before the error
    showed. NUL bytes at the end are padding."""
    if not data.startswith(GZIP_MAGIC):
        return data, []
    parts: list[bytes] = []
    damage = []
    position = 0
    while position < len(data):
        if data.startswith(GZIP_MAGIC, position):
            end, problem = _inflate(data, position, parts)
            if problem is None:
                position = end
                continue
        elif data[position] == 0 and not data[position:].strip(b"\0"):
            break
        else:
            problem = "bytes that are not a gzip member"
        resume = _next_member(data, position + 1)
        damage.append((position, resume, problem))
        position = resume
    return b"".join(parts), damage


def _inflate(data: bytes, start: int, out: list[bytes]) -> tuple[int, str | None]:
    """Inflate the gzip member at `start` into `out`: where it ends, and what is wrong with it, if anything."""
    inflater = zlib.decompressobj(wbits=31)
    member: list[bytes] = []
    position = start
    try:
        while position < len(data) and not inflater.eof:
            member.append(inflater.decompress(data[position : position + GZIP_CHUNK]))
            position += GZIP_CHUNK
    except zlib.error as error:
        return position, f"corrupt gzip stream: {error}"
    out.extend(member)
    if not inflater.eof:
        return len(data), GZIP_CUT_SHORT
    return min(position, len(data)) - len(inflater.unused_data), None


def _next_member(data: bytes, after: int) -> int:
    """The next gzip header from which a member inflates without error (to its end, or to the end of the
    data), or the end of the data."""
    candidate = data.find(GZIP_MAGIC, after)
    while candidate != -1:
        if _inflate(data, candidate, [])[1] in (None, GZIP_CUT_SHORT):
            return candidate
        candidate = data.find(GZIP_MAGIC, candidate + 1)
    return len(data)


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
