"""Split one Firehose object into JSON values, one at a time, without ever trusting text replacement.

Firehose concatenates records with no separator (`{...}{...}`); producers may also put newlines between
them. The fast path cuts at `}` followed by optional whitespace and `{`, and parses the slice with orjson.
Anything orjson rejects (a cut inside a string, as in a value containing `}{`, or damage) is re-read
exactly with the standard library decoder, which also keeps duplicate keys (orjson silently keeps only the
last). A value whose extent is known but whose content is unusable (invalid UTF-8, NaN or Infinity, a lone
surrogate escape, nesting deeper than `MAX_DEPTH`, more than `MAX_RECORD_BYTES`) is rejected whole and
scanning resumes right after it, so nothing inside it passes for a record. The depth bound is what lets
the recursive steps after splitting (normalizing, encoding) run on any input without a RecursionError.

Bytes that do not decode (a damaged record, junk between records, a bare string or number) are rejected
as one range that runs to the next record start (`_next_record_start`): a damaged record is one
rejection, the objects inside it never pass for records, and the record after it still flows. Finding
that start reads each byte a bounded number of times, so recovery costs time linear in the object.
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
# The exact path decodes a small window first and a four times larger one only when a value runs past it,
# so each record costs a few times its own size, not MAX_RECORD_BYTES.
EXACT_WINDOWS = (64 * 1024, 256 * 1024, 1024 * 1024, MAX_RECORD_BYTES)
# A CTR nests four levels deep; past this a value is not a contact record, and far past it the decoders
# and every recursive step after them would run out of stack.
MAX_DEPTH = 64
# Rejections whose byte range is the whole value: scanning resumes after it rather than inside it.
VALUE_PROBLEMS = frozenset({"invalid_number", "invalid_utf8", "invalid_unicode", "too_deep", "too_large"})
# Strings and brackets, to find where a value too deep to decode ends without recursing.
BRACKET_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
# A decode error this close to the end of a window may only mean that the window cut a token (`fals`,
# `\ud83d\ud`): a larger window decides.
CUT_TOKEN_BYTES = 8
# Where a record may start after damage: an object's `{` followed by a key's quote or its own `}`.
OBJECT_START = re.compile(rb'\{[ \t\r\n]*["}]')
# What follows a value that has more members of its objects after it: closing brackets, a comma, a key.
MEMBER_AFTER = re.compile(rb'[ \t\r\n\]}]*,[ \t\r\n]*"')
# Damaged JSON text holds one of these before any nested value; junk between records may hold none, and
# then any value after it is a record (`{}` included).
JSON_TEXT = re.compile(rb'["{\[]')
# Only text with a surrogate escape can decode to a lone surrogate, which no UTF-8 writer accepts.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
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
    """Yield every JSON object or list in `data` from `start` on, in order, and every unusable byte range
    between them."""
    view = memoryview(data)
    pos = _skip_whitespace(data, start)
    while pos < len(data):
        decoded = _decode_at(data, view, pos)
        if data[pos] not in b"{[" and (isinstance(decoded, Record) or decoded.reason in VALUE_PROBLEMS):
            # A bare string or number is no record, but a piece of one (a key, a value) or of junk: it
            # belongs with the bytes around it.
            decoded = Rejected(pos, decoded.end, "not_an_object", "a bare string, number or literal")
        if isinstance(decoded, Record):
            yield decoded
            pos = _skip_whitespace(data, decoded.end)
            continue
        resume = decoded.end if decoded.reason in VALUE_PROBLEMS else _next_record_start(data, pos, decoded.end)
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
    """The one value that starts at `start`, or why none does there (for bytes that do not decode, the
    rejection ends where they stop reading as JSON)."""
    return _decode_at(data, memoryview(data), start)


def _decode_at(data: bytes, view: memoryview, start: int) -> Record | Rejected:
    fast = _decode_fast(data, view, start)
    decoded = fast if fast is not None else _decode_exact(data, start)
    if isinstance(decoded, Record) and decoded.end - start > MAX_RECORD_BYTES:
        return Rejected(start, decoded.end, "too_large", f"{decoded.end - start} bytes; a record may have {MAX_RECORD_BYTES}")
    return decoded


def _decode_fast(data: bytes, view: memoryview, start: int) -> Record | Rejected | None:
    """orjson on the slice up to the first candidate end; None when the exact decoder must decide (the cut
    fell inside a string, the record is damaged, or orjson would not give its exact value)."""
    cut = CUT_POINT.search(data, start)
    end = cut.end() if cut else _rstrip_end(data)
    piece = view[start:end]
    try:
        value = orjson.loads(piece)
    except orjson.JSONDecodeError:
        return None
    if _too_deep(data, start, end, value):
        return Rejected(start, end, "too_deep", f"nested deeper than {MAX_DEPTH} levels")
    # orjson keeps only the last of repeated keys and rounds integers beyond 64 bits; re-encoding
    # gives back the input exactly only when neither happened (and for compact input).
    if orjson.dumps(value) != piece:
        return None
    return Record(start, end, value)


def _rstrip_end(data: bytes, end: int | None = None) -> int:
    end = len(data) if end is None else end
    while end and data[end - 1] in WHITESPACE:
        end -= 1
    return end


def _decode_exact(data: bytes, start: int) -> Record | Rejected:
    """The standard library decoder on a bounded window: exact value end, duplicate keys kept. A larger
    window is tried only when the smaller one ended before the value did."""
    for size in EXACT_WINDOWS:
        decoded = _decode_window(data, start, size)
        cut_short = (
            not isinstance(decoded, Record) and decoded.reason not in VALUE_PROBLEMS
            and decoded.end > start + size - CUT_TOKEN_BYTES
        )
        if not cut_short or start + size >= len(data):
            return decoded
    # Still JSON after MAX_RECORD_BYTES: too large to be a record, whether or not it would end.
    detail = f"more than {MAX_RECORD_BYTES} bytes; a record may have {MAX_RECORD_BYTES}"
    return Rejected(start, _next_record_start(data, start, start + size), "too_large", detail)


def _decode_window(data: bytes, start: int, size: int) -> Record | Rejected:
    window = data[start : start + size]
    text = _as_text(window, "utf-8")
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
    end, stop = _bracket_end(data, start)
    if end is not None:
        return Rejected(start, end, "too_deep", f"nested deeper than {MAX_DEPTH} levels")
    reason = "truncated" if stop == len(data) else "invalid_json"
    return Rejected(start, stop, reason, f"nested deeper than {MAX_DEPTH} levels and never closed")


def _bracket_end(data: bytes, start: int) -> tuple[int | None, int]:
    """Where the value at `start` ends, by counting brackets (strings skipped), for values too deep to
    decode: (end, end); or (None, where it stops being JSON) when it never closes: at a `{` or `[` that
    follows none of `:` `,` `[` (the next record, say), or at the end of the data."""
    depth = 0
    for token in BRACKET_TOKENS.finditer(data, start):
        bracket = token.group()
        if bracket in (b"{", b"["):
            if depth and data[_rstrip_end(data, token.start()) - 1] not in b":,[":
                return None, token.start()
            depth += 1
        elif bracket in (b"}", b"]"):
            depth -= 1
            if depth == 0:
                return token.end(), token.end()
    return None, len(data)


def _syntax_rejection(start: int, window: bytes, text: str, error: json.JSONDecodeError) -> Rejected:
    """Bytes that do not decode, up to where they stop reading as JSON (all of the window when it ran out)."""
    if error.pos >= len(text.rstrip()) - 1 or error.msg.startswith("Unterminated"):
        return Rejected(start, start + len(window), "truncated", error.msg)
    return Rejected(start, start + _byte_length(text[: error.pos]), "invalid_json", error.msg)


def _as_text(window: bytes, encoding: str) -> str:
    """Bytes as text for the decoders (undecodable bytes kept as lone surrogates): the one place this costly
    step happens, so its total per object can be counted."""
    return window.decode(encoding, "surrogateescape")


def _byte_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _utf8_writable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _next_record_start(data: bytes, start: int, readable_end: int) -> int:
    """The start of the first record after the bytes from `start` that do not decode (they read as JSON
    up to `readable_end`), or the end of the data.

    A record starts at a `{` from which a value decodes (a record, or a value rejected whole). In damaged
    JSON text (after a quote or a bracket, or with more members after it) it must also not be empty, nor
    sit as a nested value does (`_opens_nested`, `_closes_nested`): so the objects inside a damaged record
    stay in it, and the next record, which Firehose writes right after the last byte of the damaged one,
    is found. What reads as JSON holds no record start but in one way: a record cut inside a string reads
    the next record's `{"` as the end of that string (`_swallowed_start`). A candidate that does not decode
    either is more damage: the range goes on from it. Each byte is read a bounded number of times: a
    candidate nested in another is skipped with it."""
    reader = _ExtentReader(data)
    json_text = JSON_TEXT.search(data, start)
    json_text_from = json_text.start() if json_text else len(data)
    while True:
        at = max(readable_end, start + 1)
        swallowed = _swallowed_start(data, start, readable_end)
        if swallowed is not None:
            is_value, end = reader.extent(swallowed)
            if not is_value:
                start, readable_end = swallowed, end
                continue
            if end - swallowed > MAX_RECORD_BYTES or not _closes_nested(data, end):
                return swallowed
            at = end
        while (found := OBJECT_START.search(data, at)) is not None:
            candidate = found.start()
            in_damaged_text = json_text_from < candidate
            if in_damaged_text and data[found.end() - 1] == ord("}"):
                at = found.end()  # an empty object there is text of the damaged record (or holds nothing)
                continue
            is_value, end = reader.extent(candidate)
            if not is_value:
                start, readable_end = candidate, end
                break
            in_damaged_text = in_damaged_text or _member_follows(data, end)
            nested = in_damaged_text and (_opens_nested(data, candidate) or _closes_nested(data, end))
            if end - candidate > MAX_RECORD_BYTES or not nested:
                return candidate
            at = end
        else:
            return len(data)


def _swallowed_start(data: bytes, start: int, readable_end: int) -> int | None:
    """The next record's `{` when reading ran into it: a record cut inside a string takes the next one's
    `{"` as the end of that string (reading ends with that `{`, whitespace and the closing quote) or stops
    at the raw newline or tab after that `{` or before it (a string cannot hold one)."""
    last = _rstrip_end(data, readable_end)
    if last > start and data[last - 1] == ord('"'):
        last = _rstrip_end(data, last - 1)
    if last - 1 > start and data[last - 1] == ord("{"):
        return last - 1
    if readable_end < len(data) and data[readable_end] in WHITESPACE:
        after = _skip_whitespace(data, readable_end)
        return after if data.startswith(b"{", after) else None
    return None


def _opens_nested(data: bytes, start: int) -> bool:
    """A key's `:` or a list's `[` before a value: where a nested value starts, never a record."""
    before = _rstrip_end(data, start)
    return before > 0 and data[before - 1] in b":["


def _closes_nested(data: bytes, end: int) -> bool:
    """What follows a value in an object, a list or a string, after it; a record is followed by the next
    record, junk, whitespace or the end."""
    after = _skip_whitespace(data, end)
    return after < len(data) and data[after] in b',}]"'


def _member_follows(data: bytes, end: int) -> bool:
    """A key after a value, past a `,` and any closing brackets: the value is inside a damaged object (an
    object that begins inside a record), whatever came before it."""
    return MEMBER_AFTER.match(data, end) is not None


class _ExtentReader:
    """Where values end, for recovery: a latin-1 view of a stretch of the data (one character per byte, so
    positions in it are byte positions, and JSON's structure is read the same), decoded once and shared by
    the candidates in it, and four times larger whenever a value runs past it. The value's content does not
    matter here: `_decode_at` reads it exactly."""

    FIRST_VIEW = 4096
    LOOKAHEAD = 1024  # a candidate this close to the end of the view gets a view of its own

    def __init__(self, data: bytes):
        self.data = data
        self.base = 0
        self.text = ""

    def extent(self, start: int) -> tuple[bool, int]:
        """(True, end) when a value (usable or not) starts at `start` and ends at `end`, or ends past
        MAX_RECORD_BYTES; (False, where it stops reading as JSON) otherwise."""
        limit = min(len(self.data), start + MAX_RECORD_BYTES + 1)
        view_end = self.base + len(self.text)
        if not (self.base <= start and (start + self.LOOKAHEAD <= view_end or view_end == len(self.data))):
            view_end = self._view(start, min(limit, start + self.FIRST_VIEW))
        while True:
            try:
                return True, _LENIENT_DECODER.raw_decode(self.text, start - self.base)[1] + self.base
            except RecursionError:
                end, stop = _bracket_end(self.data, start)
                return (True, end) if end is not None else (False, stop)
            except json.JSONDecodeError as error:
                stopped = self.base + error.pos
                if not (error.msg.startswith("Unterminated") or stopped > view_end - CUT_TOKEN_BYTES):
                    return False, stopped
                if view_end >= limit:  # read to the end of the data (cut short), or past the size limit
                    return limit < len(self.data), limit
                view_end = self._view(start, min(limit, start + 4 * (view_end - start)))

    def _view(self, start: int, end: int) -> int:
        self.base, self.text = start, _as_text(self.data[start:end], "latin-1")
        return end


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
