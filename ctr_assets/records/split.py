"""Split one Firehose object into JSON values, one at a time, without ever trusting text replacement.

Firehose concatenates records with no separator (`{...}{...}`); producers may also put newlines between
them. The fast path cuts at `}` followed by optional whitespace and `{`, and parses the slice with orjson;
a cut that falls inside a string (a value containing `}{`) fails with "unexpected end of data" and is
extended to the next cut. Anything orjson rejects is re-read exactly with the standard library decoder,
which also keeps duplicate keys (orjson silently keeps only the last). Bytes that decode to nothing are
reported as a `Rejected` range and scanning resumes at the next `{` from which a value decodes. A value
whose extent is known but whose content is unusable (invalid UTF-8, NaN or Infinity, a lone surrogate
escape, nesting deeper than `MAX_DEPTH`, more than `MAX_RECORD_BYTES`) is rejected whole and scanning
resumes right after it, so nothing inside it passes for a record. The depth bound is what lets the
recursive steps after splitting (normalizing, encoding) run on any input without a RecursionError.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterator

import orjson

UTF8_BOM = b"\xef\xbb\xbf"
WHITESPACE = b" \t\r\n"
# A record may end at a `}` that is followed by optional whitespace and the next record's `{`.
CUT_POINT = re.compile(rb"\}(?=[ \t\r\n]*\{)")
MAX_RECORD_BYTES = 4 * 1024 * 1024  # Firehose records are at most 1,000 KiB; the exact path reads this far
# The exact path decodes a small window first and re-reads in the large one only what fails in it, so
# splitting an object of many non-compact records stays linear instead of decoding MAX_RECORD_BYTES each.
EXACT_WINDOWS = (64 * 1024, MAX_RECORD_BYTES)
# A CTR nests four levels deep; past this a value is not a contact record, and far past it the decoders
# and every recursive step after them would run out of stack.
MAX_DEPTH = 64
# Rejections whose byte range is the whole value: scanning resumes after it rather than inside it.
VALUE_PROBLEMS = frozenset({"invalid_number", "invalid_utf8", "invalid_unicode", "too_deep", "too_large"})
# Strings and brackets, to find where a value too deep to decode ends without recursing.
BRACKET_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
# Only text with a surrogate escape can decode to a lone surrogate, which no UTF-8 writer accepts.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
MAX_FAST_EXTENSIONS = 64
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1
MAX_INT_CHARS = max(len(str(INT64_MIN)), len(str(UINT64_MAX)))


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded JSON value and the byte range it came from."""

    start: int
    end: int
    value: Any


@dataclass(frozen=True, slots=True)
class Rejected:
    """A byte range that holds no usable JSON value, and why."""

    start: int
    end: int
    reason: str
    detail: str


class DuplicateKeys(list):
    """The (key, value) pairs of a JSON object that repeats a key; a dict would drop all but the last."""


def split_values(data: bytes, start: int = 0) -> Iterator[Record | Rejected]:
    """Yield every JSON value in `data` from `start` on, in order, and every unusable byte range between them."""
    view = memoryview(data)
    pos = _skip_whitespace(data, start)
    while pos < len(data):
        decoded = _decode_at(data, view, pos)
        if isinstance(decoded, Record):
            yield decoded
            pos = _skip_whitespace(data, decoded.end)
            continue
        resume = decoded.end if decoded.reason in VALUE_PROBLEMS else _next_decodable_start(data, view, pos)
        yield Rejected(pos, resume, decoded.reason, decoded.detail)
        pos = _skip_whitespace(data, resume)


def _skip_whitespace(data: bytes, pos: int) -> int:
    while True:
        while pos < len(data) and data[pos] in WHITESPACE:
            pos += 1
        if data.startswith(UTF8_BOM, pos):
            pos += len(UTF8_BOM)
            continue
        return pos


def decode_at(data: bytes, start: int) -> Record | Rejected:
    """The one value that starts at `start`, or why none does there."""
    return _decode_at(data, memoryview(data), start)


def _decode_at(data: bytes, view: memoryview, start: int) -> Record | Rejected:
    fast = _decode_fast(data, view, start)
    decoded = fast if fast is not None else _decode_exact(data, start)
    if isinstance(decoded, Record) and decoded.end - start > MAX_RECORD_BYTES:
        return Rejected(start, decoded.end, "too_large", f"{decoded.end - start} bytes; a record may have {MAX_RECORD_BYTES}")
    return decoded


def _decode_fast(data: bytes, view: memoryview, start: int) -> Record | Rejected | None:
    """orjson on candidate slices; None when the exact decoder must decide."""
    search_from = start
    for _ in range(MAX_FAST_EXTENSIONS):
        cut = CUT_POINT.search(data, search_from)
        end = cut.end() if cut else _rstrip_end(data)
        piece = view[start:end]
        try:
            value = orjson.loads(piece)
        except orjson.JSONDecodeError as error:
            if cut is None or not error.msg.startswith("unexpected end of data"):
                return None
            search_from = end
            continue
        if _too_deep(data, start, end, value):
            return Rejected(start, end, "too_deep", f"nested deeper than {MAX_DEPTH} levels")
        # orjson keeps only the last of repeated keys and rounds integers beyond 64 bits; re-encoding
        # gives back the input exactly only when neither happened (and for compact input).
        if orjson.dumps(value) != piece:
            return None
        return Record(start, end, value)
    return None


def _rstrip_end(data: bytes) -> int:
    end = len(data)
    while end and data[end - 1] in WHITESPACE:
        end -= 1
    return end


def _decode_exact(data: bytes, start: int) -> Record | Rejected:
    """The standard library decoder on a bounded window: exact value end, duplicate keys kept."""
    for size in EXACT_WINDOWS:
        decoded = _decode_window(data, start, size)
        if isinstance(decoded, Record) or decoded.reason in VALUE_PROBLEMS or start + size >= len(data):
            break
    return decoded


def _decode_window(data: bytes, start: int, size: int) -> Record | Rejected:
    window = data[start : start + size]
    text = window.decode("utf-8", "surrogateescape")
    try:
        value, end_char = _EXACT_DECODER.raw_decode(text)
    except json.JSONDecodeError as error:
        return _syntax_rejection(start, window, text, error)
    except ValueError as error:
        # NaN, Infinity or a number beyond double range: not JSON, but the lenient decoder finds its end.
        try:
            end_char = _LENIENT_DECODER.raw_decode(text)[1]
        except json.JSONDecodeError as syntax_error:
            return _syntax_rejection(start, window, text, syntax_error)
        except RecursionError:
            return _deep_rejection(data, start)
        return Rejected(start, start + _byte_length(text[:end_char]), "invalid_number", str(error))
    except RecursionError:
        return _deep_rejection(data, start)
    end = start + _byte_length(text[:end_char])
    if _too_deep(data, start, end, value):
        return Rejected(start, end, "too_deep", f"nested deeper than {MAX_DEPTH} levels")
    try:
        data[start:end].decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejected(start, end, "invalid_utf8", str(error))
    if SURROGATE_ESCAPE.search(data, start, end) and not _utf8_writable(value):
        return Rejected(start, end, "invalid_unicode", "a \\u escape leaves a lone surrogate, which UTF-8 cannot hold")
    return Record(start, end, value)


def _too_deep(data: bytes, start: int, end: int, value: Any) -> bool:
    """True when `value` nests deeper than MAX_DEPTH. Counting brackets first (in C) spares nearly every
    record the walk: a value cannot be deeper than the brackets it contains."""
    if data.count(b"{", start, end) + data.count(b"[", start, end) <= MAX_DEPTH:
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list or kind is DuplicateKeys:
            if depth > MAX_DEPTH:
                return True
            children = item.values() if kind is dict else (pair[1] for pair in item) if kind is DuplicateKeys else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _deep_rejection(data: bytes, start: int) -> Rejected:
    """A value too deep for the decoders to recurse through: find its end by counting brackets instead."""
    depth = 0
    for token in BRACKET_TOKENS.finditer(data, start):
        bracket = token.group()
        if bracket in (b"{", b"["):
            depth += 1
        elif bracket in (b"}", b"]"):
            depth -= 1
            if depth == 0:
                return Rejected(start, token.end(), "too_deep", f"nested deeper than {MAX_DEPTH} levels")
    return Rejected(start, len(data), "too_deep", f"nested deeper than {MAX_DEPTH} levels and never closed")


def _syntax_rejection(start: int, window: bytes, text: str, error: json.JSONDecodeError) -> Rejected:
    ran_out = error.pos >= len(text.rstrip()) - 1 or error.msg.startswith("Unterminated")
    return Rejected(start, start + len(window), "truncated" if ran_out else "invalid_json", error.msg)


def _byte_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _utf8_writable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _next_decodable_start(data: bytes, view: memoryview, after: int) -> int:
    """The next `{` from which a JSON value decodes (a record, or a value rejected whole for its content),
    or the end of the data. Stopping at a value rejected whole keeps it out of the junk before it, and
    keeps a deep value from being retried at every `{` inside it."""
    candidate = data.find(b"{", after + 1)
    while candidate != -1:
        decoded = _decode_at(data, view, candidate)
        if isinstance(decoded, Record) or decoded.reason in VALUE_PROBLEMS:
            return candidate
        candidate = data.find(b"{", candidate + 1)
    return len(data)


def _keep_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict | DuplicateKeys:
    result = dict(pairs)
    return result if len(result) == len(pairs) else DuplicateKeys(pairs)


def _parse_int(text: str) -> int | str:
    """Integers outside what Parquet and orjson hold (int64..uint64) are kept as their decimal text."""
    if len(text) > MAX_INT_CHARS:  # also spares int() its 4300-digit limit
        return text
    value = int(text)
    return value if INT64_MIN <= value <= UINT64_MAX else text


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


_EXACT_DECODER = json.JSONDecoder(
    object_pairs_hook=_keep_duplicate_keys,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_reject_constant,
)
# Finds where an unusable value ends; it never raises on a number or constant.
_LENIENT_DECODER = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=str)
