"""One raw Firehose object to normalized NDJSON plus quarantine (design rules 1, 2, 4 and 6)."""

import base64
import gzip
import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.records.flatten import decompress, flatten_object

KEY = "raw/2026/11/27/10/ctr-stream-1-2026-11-27-10-05-00-0000"


def ctr(contact_id: str = "c-1", **fields) -> dict:
    """A Connect-shaped CTR, keys as Connect writes them."""
    return {"ContactId": contact_id, "InitiationTimestamp": "2026-11-27T10:00:00Z", "Channel": "VOICE", **fields}


def compact(*records) -> bytes:
    return b"".join(json.dumps(record, separators=(",", ":")).encode() for record in records)


def flatten(data: bytes):
    flat, quarantine = io.BytesIO(), io.BytesIO()
    stats = flatten_object(data, KEY, flat, quarantine)
    lines = [json.loads(line) for line in flat.getvalue().splitlines()]
    entries = [json.loads(line) for line in quarantine.getvalue().splitlines()]
    assert stats.records_in == stats.records_written + stats.records_quarantined
    assert (len(lines), len(entries)) == (stats.records_written, stats.records_quarantined)
    return stats, lines, entries


def test_each_record_becomes_one_normalized_line():
    data = compact(ctr("a", Agent={"UserName": "ann"}), ctr("b"))
    stats, lines, entries = flatten(data)
    common = {"initiationtimestamp": "2026-11-27T10:00:00Z", "channel": "VOICE"}
    assert lines == [{"contactid": "a", **common, "agent": {"username": "ann"}}, {"contactid": "b", **common}]
    assert entries == []
    assert (stats.records_in, stats.records_written, stats.bytes_in) == (2, 2, len(data))


def test_garbage_and_a_truncated_tail_are_quarantined_with_offsets_and_exact_bytes():
    first, second = compact(ctr("a")), compact(ctr("b"))
    data = first + b"\x00junk" + second + b'{"ContactId":"c","Agent":{'
    stats, lines, entries = flatten(data)
    assert [line["contactid"] for line in lines] == ["a", "b"]
    garbage_at, tail_at = len(first), len(first) + 5 + len(second)
    assert [(entry["offset"], entry["length"], entry["reason"], entry["data"]) for entry in entries] == [
        (garbage_at, 5, "invalid_json", "\x00junk"),
        (tail_at, len(data) - tail_at, "truncated", '{"ContactId":"c","Agent":{'),
    ]
    assert all(entry["source_key"] == KEY for entry in entries)
    assert stats.reasons == {"invalid_json": 1, "truncated": 1}


def test_invalid_utf8_is_quarantined_byte_exact_as_base64():
    bad = b'{"ContactId":"caf\xe9","InitiationTimestamp":"2026-11-27T10:00:00Z"}'
    _, lines, entries = flatten(compact(ctr("a")) + bad)
    assert [line["contactid"] for line in lines] == ["a"]
    (entry,) = entries
    assert entry["reason"] == "invalid_utf8" and "data" not in entry
    assert base64.b64decode(entry["data_base64"]) == bad


def test_nan_infinity_and_lone_surrogates_are_quarantined_not_crashes():
    bad = [b'{"ContactId":"n","X":NaN}', b'{"ContactId":"i","X":{"Y":-Infinity}}', b'{"ContactId":"s","X":"\\udc00"}']
    stats, lines, entries = flatten(compact(ctr("a")) + b"".join(bad) + compact(ctr("b")))
    assert [line["contactid"] for line in lines] == ["a", "b"]
    assert [entry["data"].encode() for entry in entries] == bad
    assert stats.reasons == {"invalid_number": 2, "invalid_unicode": 1}


def test_a_byte_order_mark_does_not_cost_a_record():
    _, lines, entries = flatten(b"\xef\xbb\xbf" + compact(ctr("a")) + b"\n\xef\xbb\xbf" + compact(ctr("b")))
    assert [line["contactid"] for line in lines] == ["a", "b"] and entries == []


def test_type_conflicts_are_quarantined_with_reason_and_path_and_neighbours_flow():
    data = compact(
        ctr("a"),
        ctr("james", Agent="James"),
        ctr("dur", Queue={"Duration": "12"}),
        ctr("ts", DisconnectTimestamp="not a time"),
        ctr("b"),
    )
    stats, lines, entries = flatten(data)
    assert [line["contactid"] for line in lines] == ["a", "b"]
    assert [(entry["reason"], entry["detail"].split(":")[0]) for entry in entries] == [
        ("type_conflict", "agent"),
        ("type_conflict", "queue.duration"),
        ("type_conflict", "disconnecttimestamp"),
    ]
    assert [json.loads(entry["data"])["ContactId"] for entry in entries] == ["james", "dur", "ts"]
    assert stats.reasons == {"type_conflict": 3}


def test_an_integer_field_too_big_for_bigint_is_quarantined_not_a_crash():
    _, lines, entries = flatten(compact(ctr("a", Queue={"Duration": 1e300}), ctr("b", Queue={"Duration": 2**64 - 1})))
    assert lines == [] and [entry["reason"] for entry in entries] == ["type_conflict", "type_conflict"]


def test_empty_objects_are_counted_and_an_empty_known_object_is_written():
    stats, lines, entries = flatten(b"{}" + compact(ctr("a", ContactDetails={}, Extra={})) + b"{}")
    assert [(line["contactid"], line["contactdetails"], line["extra"]) for line in lines] == [("a", {}, {})]
    assert [(entry["offset"], entry["reason"]) for entry in entries] == [
        (0, "missing_field"),
        (stats.bytes_in - 2, "missing_field"),
    ]


def test_duplicate_and_colliding_keys_keep_every_value_and_are_counted():
    data = (
        b'{"ContactId":"a","InitiationTimestamp":"2026-11-27T10:00:00Z",'
        b'"Attributes":{"Foo":1,"foo":2,"Foo":3},"X-Y":1,"xy":2}'
    )
    stats, lines, _ = flatten(data)
    assert lines[0]["attributes"] == {"foo": "1", "foo_2": "2", "foo_3": "3"}
    assert (lines[0]["xy"], lines[0]["xy_2"]) == (1, 2)
    assert stats.collisions == 3


def test_unicode_keys_are_lower_cased_and_kept():
    _, lines, _ = flatten(compact(ctr("a", Attributes={"Ñame": "Zoë"})))
    assert lines[0]["attributes"] == {"ñame": "Zoë"}


def test_timestamps_with_offsets_are_written_in_utc():
    _, lines, _ = flatten(compact(ctr("a", InitiationTimestamp="2026-11-27T23:30:00-02:00")))
    assert lines[0]["initiationtimestamp"] == "2026-11-28T01:30:00.000000Z"


def test_gzip_is_read_transparently():
    data = compact(ctr("a"), ctr("b"))
    assert flatten(gzip.compress(data))[1] == flatten(data)[1]


def test_every_member_of_a_multi_member_gzip_is_read():
    members = gzip.compress(compact(ctr("a"))) + gzip.compress(compact(ctr("b"), ctr("c"))) + b"\0\0"
    stats, lines, entries = flatten(members)
    assert [line["contactid"] for line in lines] == ["a", "b", "c"] and entries == []


def test_large_multi_member_gzip_reads_every_member():
    payloads = [compact(*(ctr(f"m{member}-{n}", Note="x" * 500) for n in range(300))) for member in range(3)]
    payload, problem = decompress(b"".join(gzip.compress(part) for part in payloads))
    assert payload == b"".join(payloads) and problem == []


def test_a_truncated_gzip_keeps_what_decoded_and_quarantines_the_rest():
    whole = gzip.compress(compact(*(ctr(f"c{n}", Note="x" * 200) for n in range(50))))
    data = gzip.compress(compact(ctr("first"))) + whole[: len(whole) * 2 // 3]
    stats, lines, entries = flatten(data)
    ids = [line["contactid"] for line in lines]
    assert ids[0] == "first" and len(ids) > 10 and ids[1:] == [f"c{n}" for n in range(len(ids) - 1)]
    gzip_entry = entries[-1]
    assert gzip_entry["reason"] == "invalid_gzip" and gzip_entry["compressed"] is True
    member_start = len(gzip.compress(compact(ctr("first"))))
    assert gzip_entry["offset"] == member_start
    assert base64.b64decode(gzip_entry["data_base64"]) == data[member_start:]
    assert [entry["reason"] for entry in entries[:-1]] == ["truncated"]


def test_bytes_after_the_last_gzip_member_are_quarantined():
    member = gzip.compress(compact(ctr("a")))
    _, lines, entries = flatten(member + b"not gzip")
    assert [line["contactid"] for line in lines] == ["a"]
    assert [(entry["reason"], entry["offset"]) for entry in entries] == [("invalid_gzip", len(member))]


GOOD = st.builds(lambda n: compact(ctr(f"g{n}")), st.integers(0, 99))
CONFLICT = st.sampled_from(
    [compact(ctr("bad", Agent="James")), compact(ctr("bad", Queue={"Duration": "x"})), b"{}", b"[1]"]
)
GARBAGE = st.binary(min_size=1, max_size=8)
PARTS = st.lists(GOOD | CONFLICT | GARBAGE, max_size=8)


@settings(max_examples=80, deadline=None)
@given(PARTS, st.binary(max_size=30), st.booleans())
def test_conservation_records_in_equals_written_plus_quarantined(parts, tail, gzipped):
    data = b"".join(parts) + tail
    if gzipped:
        data = gzip.compress(data)[: len(data) // 2 + 10]
    stats, lines, entries = flatten(data)  # `flatten` asserts the counts and the outputs agree
    assert stats.records_in == len(lines) + len(entries)
    assert all(entry["source_key"] == KEY and entry["reason"] for entry in entries)
    if not gzipped:
        for entry in entries:
            kept = entry["data"].encode() if "data" in entry else base64.b64decode(entry["data_base64"])
            assert kept == data[entry["offset"] : entry["offset"] + entry["length"]]
