"""The merge detects the schema from the first line of each shape: that must find what detecting from every
line finds, column order included."""

import json
from contextlib import closing

import duckdb
import orjson
from ctr_assets.records._keyscan import first_of_each_shape
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.lake.table import _json_reader
from ctr_assets.records.schema import pin, relation_schema

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


@settings(max_examples=300, deadline=None)
@given(st.lists(RECORD_SKELETONS, min_size=1, max_size=3), st.data())
def test_detecting_from_the_first_line_of_each_shape_finds_the_schema_every_line_gives(tmp_path_factory, skeletons, data):
    count = data.draw(st.integers(min_value=1, max_value=12))
    records = [filled(data.draw(st.sampled_from(skeletons)), data) for _ in range(count)]
    tmp_path = tmp_path_factory.mktemp("shapes")
    lines = b"".join(orjson.dumps(record) + b"\n" for record in records)
    first = first_of_each_shape(lines, set())
    assert detected(tmp_path, "first.ndjson", first) == detected(tmp_path, "all.ndjson", lines)


def test_first_lines_of_new_shapes_are_kept_in_order_across_calls():
    seen: set[int] = set()
    first = first_of_each_shape(b'{"a":1,"b":[1,2]}\n{"a":2,"b":[3]}\n\n{"a":"x","b":[]}\n', seen)
    assert first == b'{"a":1,"b":[1,2]}\n{"a":"x","b":[]}\n'  # list lengths do not make a shape; kinds do
    later = b'{"a":3,"b":[4,5,6]}\n{"b":[1],"a":1}\n{"a":1.5,"b":[1]}\n{"a":{"c":1},"b":[1]}\n{"a":{"d":1},"b":[1]}'
    assert first_of_each_shape(later, seen) == (
        b'{"b":[1],"a":1}\n{"a":1.5,"b":[1]}\n{"a":{"c":1},"b":[1]}\n{"a":{"d":1},"b":[1]}\n'  # order, float, keys
    )
    assert len(seen) == 6


def test_empty_lists_and_empty_objects_are_different_shapes():
    data = b'{"a":[],"b":[]}\n{"a":[],"b":{}}\n{"a":{},"b":[]}\n{"a":{},"b":{}}\n'
    assert first_of_each_shape(data, set()) == data


def test_integers_beyond_64_bits_and_mixed_lists_are_shapes_of_their_own():
    data = b'{"a":12345678901234567890}\n{"a":12345678901234567891}\n{"a":[1,"x"]}\n{"a":["x",1]}\n{"a":[1,1]}\n'
    assert first_of_each_shape(data + b'{"a":[7]}\n', set()) == data


# Keys without escapes, so a compact and a spaced encoding of one record hold the same key bytes.
PLAIN_RECORDS = st.recursive(
    SCALARS, lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3), max_leaves=8
).filter(lambda value: isinstance(value, (dict, list)))


@settings(max_examples=200, deadline=None)
@given(PLAIN_RECORDS)
def test_whitespace_between_tokens_does_not_make_a_shape(record):
    compact = orjson.dumps(record) + b"\n"
    spaced = json.dumps(record, ensure_ascii=False).encode() + b"\n"
    assert first_of_each_shape(compact + spaced, set()) == compact


def test_lines_that_differ_in_a_key_are_two_shapes_with_or_without_spaces():
    """Before, a space before a key made the key read as a string value: `{"a": 1, "c": 2}` had the
    shape of `{"a": 1, "b": 2}`, and the merge missed column `c`."""
    for lines in (b'{"a":1,"b":2}\n{"a":1,"c":2}\n', b'{"a": 1, "b": 2}\n{"a": 1, "c": 2}\n', b'{ "b":2}\n{ "c":2}\n'):
        assert first_of_each_shape(lines, set()) == lines
