"""The merge detects the schema from the first line of each shape: that must find what detecting from every
line finds, column order included. Each test runs on the compiled function and on its Python twin, and the
two must pick the same lines from any input."""

import json
from contextlib import closing
from types import SimpleNamespace

import duckdb
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.lake.table import _json_reader
from ctr_assets.records import _keyscan
from ctr_assets.records.schema import pin, relation_schema

needs_compiled = pytest.mark.skipif(_keyscan.compiled is None, reason="the C scanner is not compiled or not chosen")
with_each = pytest.mark.parametrize("first_of_each_shape", [
    pytest.param(getattr(_keyscan.compiled, "first_of_each_shape", None), id="compiled", marks=needs_compiled),
    pytest.param(_keyscan.first_of_each_shape_python, id="python"),
])
# Few keys, so shapes repeat; two known CTR fields (a struct and the any-field attributes) among them.
KEYS = st.sampled_from(["a", "b", "c", "agent", "attributes", "username"])
SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "x", "2026-03-02", "2026-03-02T10:00:00Z", "12:30:00", "6f1c5c2e-8f8b-4d3e-9d6b-2f0c1a9b7e11"])
)
# Records are skeletons (keys and nesting) whose leaves are filled anew for each record, so lines often
# share everything but the kinds of some values, which is where a shape could be too coarse.
LEAF = None
SKELETONS = st.recursive(
    st.just(LEAF), lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=6,
)
RECORD_SKELETONS = st.dictionaries(KEYS, SKELETONS, min_size=1, max_size=4)


def filled(skeleton, data):
    if isinstance(skeleton, dict):
        return {key: filled(child, data) for key, child in skeleton.items()}
    if isinstance(skeleton, list):
        return [filled(child, data) for child in skeleton]
    return data.draw(SCALARS)


def detected(tmp_path, name: str, data: bytes) -> list:
    path = tmp_path / name
    path.write_bytes(data)
    with closing(duckdb.connect()) as connection:
        found = relation_schema(connection.sql(f"SELECT * FROM {_json_reader([path.as_posix()])}, sample_size=-1) LIMIT 0"))
    return list(pin(found).items())


@with_each
@settings(max_examples=300, deadline=None)
@given(st.lists(RECORD_SKELETONS, min_size=1, max_size=3), st.data())
def test_detecting_from_the_first_line_of_each_shape_finds_the_schema_every_line_gives(
        first_of_each_shape, tmp_path_factory, skeletons, data):
    count = data.draw(st.integers(min_value=1, max_value=12))
    records = [filled(data.draw(st.sampled_from(skeletons)), data) for _ in range(count)]
    tmp_path = tmp_path_factory.mktemp("shapes")
    lines = b"".join(orjson.dumps(record) + b"\n" for record in records)
    first = first_of_each_shape(lines, set())
    assert detected(tmp_path, "first.ndjson", first) == detected(tmp_path, "all.ndjson", lines)


@with_each
def test_first_lines_of_new_shapes_are_kept_in_order_across_calls(first_of_each_shape):
    seen: set[int] = set()
    first = first_of_each_shape(b'{"a":1,"b":[1,2]}\n{"a":2,"b":[3]}\n\n{"a":"x","b":[]}\n', seen)
    assert first == b'{"a":1,"b":[1,2]}\n{"a":"x","b":[]}\n'  # list lengths do not make a shape; kinds do
    later = b'{"a":3,"b":[4,5,6]}\n{"b":[1],"a":1}\n{"a":1.5,"b":[1]}\n{"a":{"c":1},"b":[1]}\n{"a":{"d":1},"b":[1]}'
    assert first_of_each_shape(later, seen) == (
        b'{"b":[1],"a":1}\n{"a":1.5,"b":[1]}\n{"a":{"c":1},"b":[1]}\n{"a":{"d":1},"b":[1]}\n'  # order, float, keys
    )
    assert len(seen) == 6


@with_each
def test_empty_lists_and_empty_objects_are_different_shapes(first_of_each_shape):
    data = b'{"a":[],"b":[]}\n{"a":[],"b":{}}\n{"a":{},"b":[]}\n{"a":{},"b":{}}\n'
    assert first_of_each_shape(data, set()) == data


@with_each
def test_integers_beyond_64_bits_and_mixed_lists_are_shapes_of_their_own(first_of_each_shape):
    data = b'{"a":12345678901234567890}\n{"a":12345678901234567891}\n{"a":[1,"x"]}\n{"a":["x",1]}\n{"a":[1,1]}\n'
    assert first_of_each_shape(data + b'{"a":[7]}\n', set()) == data


# Keys without escapes, so a compact and a spaced encoding of one record hold the same key bytes.
PLAIN_RECORDS = st.recursive(
    SCALARS, lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3), max_leaves=8
).filter(lambda value: isinstance(value, (dict, list)))


@with_each
@settings(max_examples=200, deadline=None)
@given(PLAIN_RECORDS)
def test_whitespace_between_tokens_does_not_make_a_shape(first_of_each_shape, record):
    compact = orjson.dumps(record) + b"\n"
    spaced = json.dumps(record, ensure_ascii=False).encode() + b"\n"
    assert first_of_each_shape(compact + spaced, set()) == compact


@with_each
def test_lines_that_differ_in_a_key_are_two_shapes_with_or_without_spaces(first_of_each_shape):
    """Before, a space before a key made the key read as a string value: `{"a": 1, "c": 2}` had the
    shape of `{"a": 1, "b": 2}`, and the merge missed column `c`."""
    for lines in (b'{"a":1,"b":2}\n{"a":1,"c":2}\n', b'{"a": 1, "b": 2}\n{"a": 1, "c": 2}\n', b'{ "b":2}\n{ "c":2}\n'):
        assert first_of_each_shape(lines, set()) == lines


# Any line the merge could meet, and more: lines of one skeleton whose values differ in kind (where a shape
# could be too coarse or too fine), compact or spaced, `\r\n` endings, bare values, numbers past 64 bits,
# nesting past the walk's stack, and lines that are not JSON at all.
DEEP = b"[" * 1100
SAMPLE_LINES = [b'[1,"a"]', b"[1]", b'{"k":[1,"a"]}', b'{"k":[1]}', b'"x"', b"12", b"-0", b"1e5", b"true", b"null", b"12345678901234567890", b"[1,[2,[3]]]", DEEP + b"1",
                DEEP + b"1" + b"]" * 1100, DEEP + b"2" + b"]" * 1100, b'{"a":1"x"}', b'{"a":tru}', b"[1}", b"}",
                b'{"a":"x', b'{"a\\":1}', b'{"\\u0061":1}', b"{1:2}", b"   ", b""]
ENCODINGS = [orjson.dumps, lambda record: json.dumps(record, ensure_ascii=False).encode() + b"\r",
             lambda record: json.dumps(record, separators=(" , ", " : ")).encode()]


@st.composite
def line_batches(draw) -> list[bytes]:
    skeletons = draw(st.lists(RECORD_SKELETONS | SKELETONS, min_size=1, max_size=3))
    data = SimpleNamespace(draw=draw)  # what `filled` draws its values from
    lines = [draw(st.sampled_from(ENCODINGS))(filled(draw(st.sampled_from(skeletons)), data))
             for _ in range(draw(st.integers(0, 8)))]
    lines += draw(st.lists(st.sampled_from(SAMPLE_LINES) | st.binary(max_size=16), max_size=3))
    return draw(st.permutations(lines))


@needs_compiled
@settings(max_examples=500, deadline=None)
@given(st.lists(line_batches(), min_size=1, max_size=3))
def test_the_python_twin_picks_the_lines_the_compiled_function_picks(batches):
    compiled_seen, python_seen = set(), set()
    for batch in batches:
        lines = b"\n".join(batch) + b"\n"
        assert _keyscan.first_of_each_shape_python(lines, python_seen) == _keyscan.compiled.first_of_each_shape(
            lines, compiled_seen)
    assert len(python_seen) == len(compiled_seen)
