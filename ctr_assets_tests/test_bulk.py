"""The bulk split-and-normalize path gives exactly what the per-record path gives, on any input. Without the
compiled scanner the bulk path is the per-record path (test_pure_python runs these tests that way too); the
tests of what only the scanner does are skipped then."""

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.records import _keyscan, bulk
from ctr_assets.records.bulk import split_normalized
from ctr_assets.records.normalize import normalize_keys
from ctr_assets.records.split import MAX_DEPTH, Rejected, split_values

needs_scanner = pytest.mark.skipif(_keyscan.scan is None, reason="the C scanner is not compiled or not chosen")
# Keys that exercise every branch: capitals, bytes the rule deletes, spellings that collide once
# normalized, non-ASCII (Unicode case rules), escapes, keys that normalize to nothing, the empty key.
TRICKY_KEYS = ["ContactId", "contactid", "Contact-Id", "connect:Subtype", "Customer Type", "É", "Straße", "a\"b",
               "back\\slash", "tab\tkey", "--", "", "_", "x_2", "X", "日本"]
KEYS = st.sampled_from(TRICKY_KEYS) | st.text(max_size=6)
# Values that look like structure from inside a string.
TRICKY_TEXT = ['}{', '"Key":', '\\"', '{"A":1}{"B":2}', '\\', 'Zoë', '\n', '}', '"']
SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(TRICKY_TEXT) | st.text(max_size=8)
)
VALUES = st.recursive(
    SCALARS, lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=4), max_leaves=12
)
RECORDS = st.dictionaries(KEYS, VALUES, max_size=6)
SEPARATORS = st.sampled_from(["", "", "", "\n", " ", "\r\n", "\t"])


def encode(record, style: str) -> bytes:
    if style == "compact":
        return orjson.dumps(record)
    if style == "ascii":
        return json.dumps(record, separators=(",", ":")).encode()
    return json.dumps(record, ensure_ascii=False, indent=1).encode()


def per_record(payload: bytes) -> list:
    """The reference: split one value at a time, then normalize its keys."""
    out = []
    for piece in split_values(payload):
        if isinstance(piece, Rejected):
            out.append(("rejected", piece.start, piece.end, piece.reason))
        else:
            value, collisions = normalize_keys(piece.value)
            out.append((piece.start, piece.end, orjson.dumps(value), collisions))
    return out


def in_bulk(payload: bytes) -> list:
    out = []
    for piece in split_normalized(payload):
        if isinstance(piece, Rejected):
            out.append(("rejected", piece.start, piece.end, piece.reason))
        else:
            if piece.text is not None:  # the line written for it: one line, the same record
                assert piece.text.endswith(b"\n") and b"\n" not in piece.text[:-1] and b"\r" not in piece.text
                assert orjson.loads(piece.text) == piece.value
            out.append((piece.start, piece.end, orjson.dumps(piece.value), piece.collisions))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(RECORDS, max_size=6), st.data())
def test_any_concatenation_of_records_comes_out_as_the_per_record_path_gives_it(records, data):
    styles = data.draw(st.lists(st.sampled_from(["compact"] * 6 + ["ascii", "indented"]), min_size=len(records),
                                max_size=len(records)))
    gaps = data.draw(st.lists(SEPARATORS, min_size=len(records), max_size=len(records)))
    payload = b"".join(gap.encode() + encode(record, style) for gap, record, style in zip(gaps, records, styles))
    assert in_bulk(payload) == per_record(payload)


@settings(max_examples=300, deadline=None)
@given(st.lists(RECORDS, min_size=1, max_size=5), st.data())
def test_damage_anywhere_comes_out_as_the_per_record_path_gives_it(records, data):
    payload = bytearray(b"".join(orjson.dumps(record) for record in records))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(payload)))
        damage = data.draw(st.sampled_from(["cut", "insert", "delete"]))
        if damage == "cut":
            del payload[at:]
        elif damage == "insert":
            payload[at:at] = data.draw(st.sampled_from([b"}", b"{", b'"', b"\\", b"]", b"x", b"\xff", b",", b"\xef\xbb\xbf"]))
        elif at < len(payload):
            del payload[at]
    assert in_bulk(bytes(payload)) == per_record(bytes(payload))


@settings(max_examples=100, deadline=None)
@given(st.lists(RECORDS, min_size=2, max_size=8), st.integers(min_value=1, max_value=200))
def test_windows_cut_anywhere_change_nothing(records, window):
    payload = b"".join(orjson.dumps(record) for record in records)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk, "WINDOW_BYTES", window)
        assert in_bulk(payload) == per_record(payload)


@needs_scanner
def test_typical_records_are_normalized_in_bulk_and_written_as_parsed():
    record = {"ContactId": "c-1", "Agent": {"Username": "Ann", "HierarchyGroups": {"Level1": {"GroupName": "Sales"}}},
              "Attributes": {"Customer-Type": "VIP", "note": '{"Intent":"x"}{"Y":1}'}, "Recordings": [{"Type": "AUDIO"}]}
    payload = orjson.dumps(record) * 3
    found = list(split_normalized(payload))
    expected = {"contactid": "c-1", "agent": {"username": "Ann", "hierarchygroups": {"level1": {"groupname": "Sales"}}},
                "attributes": {"customertype": "VIP", "note": '{"Intent":"x"}{"Y":1}'}, "recordings": [{"type": "AUDIO"}]}
    assert [piece.value for piece in found] == [expected] * 3
    assert all(piece.text == orjson.dumps(expected) + b"\n" for piece in found)  # made in bulk, not per record


@needs_scanner
def test_colliding_keys_take_the_per_record_path_and_are_counted():
    payload = b'{"ContactId":"a","contact-id":"b"}{"X":1}'
    found = list(split_normalized(payload))
    assert [(piece.value, piece.collisions, piece.text) for piece in found] == [
        ({"contactid": "a", "contactid_2": "b"}, 1, None),
        ({"x": 1}, 0, b'{"x":1}\n'),
    ]


def test_a_record_nested_too_deep_is_rejected_whole_and_the_next_one_flows():
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    payload = b'{"A":1}{"D":' + deep + b'}{"B":2}'
    found = in_bulk(payload)
    assert found == per_record(payload)
    assert [item[3] for item in found if item[0] == "rejected"] == ["too_deep"]
    assert [item[2] for item in found if item[0] != "rejected"] == [b'{"a":1}', b'{"b":2}']


DAMAGE = [b"}", b"{", b'"', b"\\", b"]", b"x", b"\xff", b",", b"\xef\xbb\xbf", b" "]
STRUCTURAL_DAMAGE = [b"}", b"{", b'"', b"\\"]


def test_every_pair_of_inserted_bytes_comes_out_as_the_per_record_path_gives_it():
    clean = b'{"a":"B"}{}'
    for first, second in [(a, b) for a in range(len(clean) + 1) for b in range(len(clean) + 2)]:
        for first_bytes in DAMAGE:
            for second_bytes in STRUCTURAL_DAMAGE:
                damaged = bytearray(clean)
                damaged[first:first] = first_bytes
                damaged[second:second] = second_bytes
                assert in_bulk(bytes(damaged)) == per_record(bytes(damaged)), bytes(damaged)


EDGE_CASES = [
    b'{"a":1 2}', b'{"a":tr ue}', b'{"a":- 1}', b'{"a" : 1 , "B" : [ 1 , 2 ] }', b'{"a":-1.5e3,"b":0.1e1,"c":-0}',
    b'{"a":123456789012345678901}', b'{"a":18446744073709551616}', b'{"a":3.14159265358979323846264}',
    b'{"a":1e400}', b'{"a":NaN}', b'{"a":"\\ud800"}', b'{"a":"\xff"}', b'{"a":"\x01"}', b'{"\x7f":1}',
    b'{"a\x01":1}', b'\xef\xbb\xbf{"a":1}', b'{"a":1}\xef\xbb\xbf{"b":2}', b'{"A":1,"a":2}', b'{"a":1,"a":2}',
    b'{"":1}', b'{"--":1}', b'{"a":[1,2}', b'{"a":{"b":1]}', b'{"a":1}}{"b":2}', b'[1]{"a":1}',
    b'{"a":1} x {"b":2}', b'{"a":{"B":1},"b":{"B":2}}', b'{"a":[{"K":1},{"K":2}]}', b'{"a":"b","c"}',
    b'{"x":' + b"[" * 1100 + b"]" * 1100 + b'}{"b":2}', b"{" + b",".join(b'"k%d":%d' % (n, n) for n in range(300)) + b"}",
]


@pytest.mark.parametrize("payload", EDGE_CASES)
def test_edge_cases_come_out_as_the_per_record_path_gives_them(payload):
    assert in_bulk(payload) == per_record(payload)


@needs_scanner
def test_non_compact_records_are_written_on_one_line_with_their_own_tokens():
    payload = b'{ "Contact Id" : "c-1",\n  "Amount": 1.50, "Name": "Zo\\u00eb" }\n{"X": [1, 2]}'
    found = list(split_normalized(payload))
    assert [piece.text for piece in found] == [b'{"contactid":"c-1","amount":1.50,"name":"Zo\\u00eb"}\n', b'{"x":[1,2]}\n']
    assert [piece.value for piece in found] == [{"contactid": "c-1", "amount": 1.5, "name": "Zoë"}, {"x": [1, 2]}]


@needs_scanner
def test_the_scanner_refuses_a_position_outside_the_payload():
    with pytest.raises(ValueError, match="position"):
        _keyscan.scan(b"{}", 3, 1024, MAX_DEPTH, 1024)
    with pytest.raises(ValueError, match="position"):
        _keyscan.scan(b"{}", -1, 1024, MAX_DEPTH, 1024)
