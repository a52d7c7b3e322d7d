"""Splitting one Firehose object into JSON values (design rule 1)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.records import split
from ctr_assets.records.split import DuplicateKeys, Record, Rejected, split_values

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
JSON_OBJECTS = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5)
SEPARATORS = st.text(alphabet=" \t\r\n", max_size=3)
# Garbage that cannot open a value which would swallow the next record (`{`, `[`, `"`).
GARBAGE = st.binary(min_size=1, max_size=6).filter(lambda junk: not set(junk) & set(b'{["'))


def pieces(data: bytes) -> list:
    return list(split_values(data))


def values(data: bytes) -> list:
    return [piece.value for piece in split_values(data) if isinstance(piece, Record)]


def rejected(data: bytes) -> list[Rejected]:
    return [piece for piece in split_values(data) if isinstance(piece, Rejected)]


def encode(value, compact: bool = True, ascii_only: bool = True) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(value, separators=separators, ensure_ascii=ascii_only).encode()


def test_concatenated_objects_come_out_in_order_with_their_byte_ranges():
    data = b'{"a":1}{"b":[2,3]}{"c":{"d":null}}'
    assert pieces(data) == [
        Record(0, 7, {"a": 1}),
        Record(7, 18, {"b": [2, 3]}),
        Record(18, 34, {"c": {"d": None}}),
    ]


def test_a_value_containing_closing_and_opening_braces_survives_intact():
    tricky = ['}{', '} {', '}\n{', '"}{"', '\\"}{\\"', "}}{{"]
    data = b"".join(encode({"Note": text, "}{": text}) for text in tricky) + b'{"last":1}'
    assert values(data) == [{"Note": text, "}{": text} for text in tricky] + [{"last": 1}]


def test_newline_and_whitespace_separated_objects_split():
    data = b'{"a":1}\n{"b":2}\r\n{"c":3} \t {"d":4}\n\n'
    assert values(data) == [{"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}]
    assert rejected(data) == []


def test_pretty_printed_objects_split():
    records = [{"ContactId": "c1", "Agent": {"Username": "ann"}}, {"ContactId": "c2", "Agent": None}]
    data = b"\n".join(json.dumps(record, indent=2).encode() for record in records)
    assert values(data) == records


def test_empty_objects_are_records():
    assert pieces(b'{}{"a":{}}{}') == [Record(0, 2, {}), Record(2, 10, {"a": {}}), Record(10, 12, {})]


def test_a_truncated_tail_is_rejected_from_its_offset_and_earlier_records_flow():
    data = b'{"a":1}{"b":2}{"c":{"d":'
    assert pieces(data)[:2] == [Record(0, 7, {"a": 1}), Record(7, 14, {"b": 2})]
    assert [(bad.start, bad.end, bad.reason) for bad in rejected(data)] == [(14, len(data), "truncated")]


def test_a_tail_cut_inside_a_string_is_truncated():
    data = b'{"a":1}{"b":"unfinished'
    assert [(bad.start, bad.end, bad.reason) for bad in rejected(data)] == [(7, len(data), "truncated")]


def test_garbage_between_records_is_rejected_with_its_range_and_neighbours_flow():
    data = b'{"a":1}garbage\x00\x01{"b":2}]]{"c":3}'
    assert pieces(data) == [
        Record(0, 7, {"a": 1}),
        Rejected(7, 16, "invalid_json", "Expecting value"),
        Record(16, 23, {"b": 2}),
        Rejected(23, 25, "invalid_json", "Expecting value"),
        Record(25, 32, {"c": 3}),
    ]


def test_a_corrupt_record_between_good_ones_is_rejected_and_neighbours_flow():
    data = b'{"a":1}{"b":2,]}{"c":3}'
    assert [piece.value for piece in pieces(data) if isinstance(piece, Record)] == [{"a": 1}, {"c": 3}]
    assert [(bad.start, bad.end, bad.reason) for bad in rejected(data)] == [(7, 16, "invalid_json")]


def test_a_byte_order_mark_at_the_start_and_between_records_is_skipped():
    bom = b"\xef\xbb\xbf"
    data = bom + b'{"a":1}\n' + bom + b'{"b":2}'
    assert pieces(data) == [Record(3, 10, {"a": 1}), Record(14, 21, {"b": 2})]


def test_invalid_utf8_rejects_the_whole_record_and_nothing_inside_it_becomes_a_record():
    bad = b'{"a":"caf\xe9","b":{"c":1}}'
    data = b'{"x":1}' + bad + b'{"y":2}'
    assert pieces(data)[0] == Record(0, 7, {"x": 1})
    assert [(piece.start, piece.end, piece.reason) for piece in rejected(data)] == [
        (7, 7 + len(bad), "invalid_utf8")
    ]
    assert values(data) == [{"x": 1}, {"y": 2}]


def test_nan_and_infinity_reject_the_whole_record_and_neighbours_flow():
    for constant in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        bad = b'{"a":' + constant + b',"b":{"c":1}}'
        data = b'{"x":1}' + bad + b'{"y":2}'
        assert values(data) == [{"x": 1}, {"y": 2}], constant
        assert [(piece.start, piece.end) for piece in rejected(data)] == [(7, 7 + len(bad))], constant


def test_a_truncated_tail_holding_nan_is_truncated():
    data = b'{"a":1}{"b":NaN,"c":'
    assert [(bad.start, bad.end, bad.reason) for bad in rejected(data)] == [(7, len(data), "truncated")]


def test_a_lone_surrogate_escape_is_rejected_but_an_escaped_pair_is_text():
    data = b'{"a":"\\ud800"}{"b":"\\ud83d\\ude00"}'
    assert [(piece.start, piece.end) for piece in rejected(data)] == [(0, 14)]
    assert values(data) == [{"b": "\U0001f600"}]


def test_integers_beyond_64_bits_are_kept_as_their_decimal_text():
    data = (
        b'{"big":123456789012345678901234567890,"neg":-9223372036854775809,'
        b'"i64min":-9223372036854775808,"u64max":18446744073709551615,"over":18446744073709551616,'
        b'"list":[99999999999999999999999]}'
    )
    assert values(data) == [
        {
            "big": "123456789012345678901234567890",
            "neg": "-9223372036854775809",
            "i64min": -(2**63),
            "u64max": 2**64 - 1,
            "over": "18446744073709551616",
            "list": ["99999999999999999999999"],
        }
    ]


def test_an_integer_of_thousands_of_digits_is_kept_as_text():
    digits = "7" * 5000
    assert values(b'{"a":' + digits.encode() + b'}') == [{"a": digits}]


def test_duplicate_keys_in_one_object_keep_every_value_in_input_order():
    data = b'{"a":1,"b":2,"a":3,"n":{"x":1,"x":2}}{"a":1}'
    first, second = values(data)
    assert isinstance(first, DuplicateKeys)
    assert list(first) == [("a", 1), ("b", 2), ("a", 3), ("n", DuplicateKeys([("x", 1), ("x", 2)]))]
    assert second == {"a": 1} and type(second) is dict


def test_non_ascii_text_decodes_exactly_whether_raw_or_escaped():
    record = {"Ñame": "Zoë 日本 😀", "k": "tab\there"}
    for ascii_only in (True, False):
        assert values(encode(record, ascii_only=ascii_only) * 2) == [record, record]


def test_pretty_printed_objects_are_decoded_in_small_windows(monkeypatch):
    """Decoding a 4 MiB window per non-compact record made splitting quadratic (~15 s for these)."""
    record = {"ContactId": "x" * 36, "Attributes": {f"k{n}": "v" * 20 for n in range(20)}}
    data = b"".join(json.dumps(record).encode() + b"\n" for _ in range(8000))
    window_sizes = []
    decode_window = split._decode_window
    monkeypatch.setattr(split, "_decode_window", lambda *args: window_sizes.append(args[2]) or decode_window(*args))
    assert len(values(data)) == 8000
    assert set(window_sizes) == {split.EXACT_WINDOWS[0]} and len(window_sizes) == 8000


@pytest.mark.parametrize("token, value", [("true", True), ("null", None), ('"\\u0041"', "A"), ("-12.5e3", -12500.0)])
@pytest.mark.parametrize("cut_into_token", [0, 1, 2, 3])
def test_a_record_larger_than_the_first_decode_window_is_read_whole(token, value, cut_into_token):
    head = '{"pad": "'
    middle = '", "v": '
    pad = 64 * 1024 - len(head) - len(middle) - cut_into_token  # the token straddles the 64 KiB mark
    record = (head + "x" * pad + middle + token + "}").encode()
    assert values(record + b'\n{"next": 1}') == [{"pad": "x" * pad, "v": value}, {"next": 1}]


@settings(max_examples=40, deadline=None)
@given(st.lists(JSON_OBJECTS, max_size=6), st.data())
def test_concatenated_objects_round_trip_exactly(records, data):
    compact = data.draw(st.booleans())
    ascii_only = data.draw(st.booleans())
    gaps = data.draw(st.lists(SEPARATORS, min_size=len(records), max_size=len(records)))
    encoded = [encode(record, compact, ascii_only) for record in records]
    blob = b"".join(gap.encode() + text for gap, text in zip(gaps, encoded))
    found = pieces(blob)
    assert all(isinstance(piece, Record) for piece in found)
    assert [piece.value for piece in found] == [json.loads(text) for text in encoded]
    assert [blob[piece.start : piece.end] for piece in found] == encoded


@settings(max_examples=40, deadline=None)
@given(st.lists(JSON_OBJECTS, min_size=1, max_size=5), st.data())
def test_a_cut_anywhere_keeps_every_record_wholly_before_it(records, data):
    encoded = [encode(record) for record in records]
    blob = b"".join(encoded)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob)))
    ends = [sum(map(len, encoded[: n + 1])) for n in range(len(encoded))]
    whole = [n for n, end in enumerate(ends) if end <= cut]
    found = pieces(blob[:cut])
    assert [(piece.end, piece.value) for piece in found[: len(whole)]] == [
        (ends[n], json.loads(encoded[n])) for n in whole
    ]
    assert all(piece.end <= cut for piece in found)
    covered = sum(piece.end - piece.start for piece in found)
    assert covered == cut  # every byte is in a record or a rejected range: nothing dropped silently


@settings(max_examples=40, deadline=None)
@given(st.lists(JSON_OBJECTS, min_size=1, max_size=5), st.data())
def test_garbage_between_records_never_costs_a_record(records, data):
    junk = data.draw(st.lists(GARBAGE, min_size=len(records) + 1, max_size=len(records) + 1))
    blob = junk[0] + b"".join(encode(record) + after for record, after in zip(records, junk[1:]))
    found = pieces(blob)
    assert [piece.value for piece in found if isinstance(piece, Record) and isinstance(piece.value, dict)] == [
        json.loads(encode(record)) for record in records
    ]
