"""The two functions of the C scanner (`_keyscan_c.c`), or what takes their place where it was not
compiled: installing needs no C compiler, and `CTR_ASSETS_PURE_PYTHON=1` chooses the Python side on a
machine that has both, so tests can run each.

- `scan` is None without the compiled scanner: bulk.py then splits and normalizes record by record, the
  path the scanner is property-tested against, so the records are the same (only slower).
- `first_of_each_shape` has a Python twin below that follows the C walk token for token, so the two pick
  the same lines from any input (property-tested); its shapes are nested tuples instead of 64-bit hashes.
"""

from __future__ import annotations

import os
import re

if os.environ.get("CTR_ASSETS_PURE_PYTHON") == "1":
    compiled = None
else:
    try:
        from ctr_assets.records import _keyscan_c as compiled
    except ImportError:  # built without a C compiler
        compiled = None

MAX_SCALAR_BYTES = 18  # as in _keyscan_c.c: every integer this long fits in 64 bits
STACK_LIMIT = 1024  # as in _keyscan_c.c: deeper lines are shapes of their own
# The tokens of the C walk: a string (escapes skipped), a scalar (up to whitespace, `,`, `]` or `}`), or
# one byte of anything else (a `"` alone is a string that never ends).
TOKEN = re.compile(rb'"(?:[^"\\]|\\[\s\S])*"|[^ \t\r\n,:"{\[}\]][^ \t\r\n,\]}]*|[^ \t\r\n]')
COMMA, COLON, QUOTE, OPEN_OBJECT, OPEN_LIST, CLOSE_OBJECT, CLOSE_LIST = b',:"{[}]'
LITERALS = {ord("t"): "b", ord("f"): "b", ord("n"): "n"}


def first_of_each_shape_python(lines: bytes, seen: set) -> bytes:
    """`first_of_each_shape` in Python: the lines of the NDJSON `lines` whose shape is not in `seen` yet,
    in order, each ending with a newline; their shapes join `seen`."""
    out = []
    for line in lines.split(b"\n"):
        if line.strip(b" \t\r"):
            shape = _line_shape(line)
            if shape not in seen:
                seen.add(shape)
                out.append(line + b"\n")
    return b"".join(out)


def _line_shape(line: bytes) -> tuple | bytes:
    """What the C hash of a line is made of, as a value: keys (their bytes), nesting, the kind of each
    value ("s" string, "b" boolean, "n" null, "f" fraction, "i"/"m" integer by sign, a long number's own
    text), an array whose elements share one shape as ("]", that shape). A line that is not JSON as the
    walk reads it is its own shape: its bytes."""
    items: list = []
    stack: list = []
    count, uniform, first, in_object, expect_key = 0, True, None, False, False
    for token in TOKEN.findall(line):
        byte = token[0]
        if byte == COMMA or byte == COLON:
            expect_key = in_object and byte == COMMA
            continue
        if byte == QUOTE:
            if len(token) == 1:
                return line
            if expect_key:
                items.append(token)
                expect_key = False
                continue
            value = "s"
        elif byte == OPEN_OBJECT or byte == OPEN_LIST:
            if len(stack) > STACK_LIMIT:
                return line
            stack.append((items, count, uniform, first, in_object))
            items, count, uniform, first = [byte], 0, True, None
            in_object = expect_key = byte == OPEN_OBJECT
            continue
        elif byte == CLOSE_OBJECT or byte == CLOSE_LIST:
            if not stack:
                return line
            value = ("]", first) if not in_object and uniform and count else (tuple(items), byte)
            items, count, uniform, first, in_object = stack.pop()
            expect_key = False
        else:
            value = LITERALS.get(byte)
            if value is None:
                if b"." in token or b"e" in token or b"E" in token:
                    value = "f"
                elif len(token) <= MAX_SCALAR_BYTES:
                    value = "m" if byte == ord("-") else "i"
                else:
                    value = token
        if not in_object:
            if count == 0:
                first = value
            elif value != first:
                uniform = False
        items.append(value)
        count += 1
    return line if stack else tuple(items)


scan = compiled.scan if compiled else None
first_of_each_shape = compiled.first_of_each_shape if compiled else first_of_each_shape_python
