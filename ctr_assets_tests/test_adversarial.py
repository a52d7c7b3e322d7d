"""Adversarial input: whatever a Firehose object holds, every record is kept losslessly or quarantined with
a reason, and the run goes on (design rules 1, 2, 4 and 6). Edge cases here complement the per-module
tests in test_split, test_normalize, test_fields and test_flatten."""

import base64
import io
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.lake.layout import flat_key
from ctr_assets.records.flatten import flatten_object
from ctr_assets.records.normalize import free_reserved_names, normalize_keys
from ctr_assets.records.split import MAX_DEPTH, MAX_RECORD_BYTES
from ctr_assets_tests.helpers import SAMPLE_START, raw_key
from ctr_assets_tests.test_split import JSON_VALUES
from ctr_assets_tests.test_table import merge_flatfiles, put_flatfile, table

KEY = "raw/2026/11/27/10/ctr-stream-1-2026-11-27-10-05-00-0000"
INITIATED = "2026-11-27T10:00:00Z"
ATTRIBUTE_LIMIT = 32 * 1024  # Amazon Connect's limit on a contact's attributes
BOM = b"\xef\xbb\xbf"


def ctr(contact_id: str, **fields) -> dict:
    return {"ContactId": contact_id, "InitiationTimestamp": INITIATED, **fields}


def encode(value, compact: bool = True, ascii_only: bool = False) -> bytes:
    return json.dumps(value, separators=(",", ":") if compact else (", ", ": "), ensure_ascii=ascii_only).encode()


def flatten(data: bytes):
    """Flatten one object; checks conservation and that every quarantine entry keeps its exact bytes."""
    flat, quarantine = io.BytesIO(), io.BytesIO()
    stats = flatten_object(data, KEY, flat, quarantine)
    lines = [json.loads(line) for line in flat.getvalue().splitlines()]
    entries = [json.loads(line) for line in quarantine.getvalue().splitlines()]
    assert stats.records_in == len(lines) + len(entries) == stats.records_written + stats.records_quarantined
    for entry in entries:
        assert entry["reason"] and entry["source_key"] == KEY
        kept = entry["data"].encode() if "data" in entry else base64.b64decode(entry["data_base64"])
        assert kept == data[entry["offset"] : entry["offset"] + entry["length"]]
    return lines, entries


# One part of a Firehose object: its bytes, and what must become of it (a line, or a quarantine reason).
def _good(contact_id: int, extras: dict, compact: bool, ascii_only: bool, bom: bool):
    record = {"ContactId": f"c{contact_id}", "InitiationTimestamp": INITIATED, **extras}
    normalized = {"contactid": f"c{contact_id}", "initiationtimestamp": INITIATED, **normalize_keys(extras)[0]}
    expected, _ = free_reserved_names(normalized)
    return (BOM if bom else b"") + encode(record, compact, ascii_only), ("written", expected)


def _bad(contact_id: int, template: bytes, reason: str):
    return template.replace(b"@", f"c{contact_id}".encode()), ("quarantined", reason)


# Extra fields under keys that are arbitrary text (prefixed so none normalizes to a documented field).
EXTRAS = st.dictionaries(st.text(max_size=10).map(lambda key: "x_" + key), JSON_VALUES, max_size=4)
DEEP = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
BAD_TEMPLATES = [
    (b'{"ContactId":"@","InitiationTimestamp":"2026-11-27T10:00:00Z","X":NaN}', "invalid_number"),
    (b'{"ContactId":"@","InitiationTimestamp":"2026-11-27T10:00:00Z","X":-Infinity}', "invalid_number"),
    (b'{"ContactId":"@","InitiationTimestamp":"2026-11-27T10:00:00Z","X":"caf\xe9"}', "invalid_utf8"),
    (b'{"ContactId":"@","InitiationTimestamp":"2026-11-27T10:00:00Z","X":"\\udc00"}', "invalid_unicode"),
    (b'{"ContactId":"@","InitiationTimestamp":"2026-11-27T10:00:00Z","X":' + DEEP + b"}", "too_deep"),
    (b'{"ContactId":"@","InitiationTimestamp":"2026-11-27T10:00:00Z","Agent":5}', "type_conflict"),
    (b'{"ContactId":"@","InitiationTimestamp":"2026-11-27T10:00:00Z","Queue":{"Duration":"12"}}', "type_conflict"),
    (b'{"ContactId":"@","InitiationTimestamp":12}', "missing_field"),
    (b'{"Id":"@","InitiationTimestamp":"2026-11-27T10:00:00Z"}', "missing_field"),
    (b'["@"]', "not_an_object"),
]
PART = st.one_of(
    st.builds(_good, st.integers(0, 10**6), EXTRAS, st.booleans(), st.booleans(), st.booleans()),
    st.builds(lambda n, bad: _bad(n, *bad), st.integers(0, 10**6), st.sampled_from(BAD_TEMPLATES)),
)
GAP = st.sampled_from([b"", b"", b"\n", b" ", b"\r\n", b"\t\n  "])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(GAP, PART), min_size=1, max_size=8))
def test_every_record_is_written_losslessly_or_quarantined_with_its_reason_whatever_its_neighbours(parts):
    data = b"".join(gap + part for gap, (part, _) in parts)
    lines, entries = flatten(data)
    assert lines == [outcome for _, (_, (kind, outcome)) in parts if kind == "written"]
    assert [entry["reason"] for entry in entries] == [
        outcome for _, (_, (kind, outcome)) in parts if kind == "quarantined"
    ]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(GAP, PART), min_size=1, max_size=6), st.data())
def test_an_object_cut_at_any_byte_keeps_every_part_wholly_before_the_cut(parts, data):
    blob = b"".join(gap + part for gap, (part, _) in parts)
    cut = data.draw(st.integers(0, len(blob)))
    ends, position = [], 0
    for gap, (part, _) in parts:
        position += len(gap) + len(part)
        ends.append(position)
    whole = [outcome for end, (_, (_, outcome)) in zip(ends, parts) if end <= cut]
    lines, entries = flatten(blob[:cut])
    expected_lines = [outcome for kind, outcome in whole if kind == "written"]
    assert lines[: len(expected_lines)] == expected_lines
    assert all(entry["offset"] + entry["length"] <= cut for entry in entries)


@pytest.mark.parametrize("field, value, kept", [
    (("Agent", "Username"), 12345, "12345"),
    (("Channel",), True, "true"),
    (("Queue", "Name"), 1.5, "1.5"),
    (("CustomerEndpoint", "Address"), 15551234567, "15551234567"),
    (("ContactDetails", "Name"), -0.0, "-0.0"),
    (("Attributes", "Count"), 7, "7"),
    (("Attributes", "Big"), 2**64, "18446744073709551616"),
    (("Tags", "Flag"), None, None),
])
def test_numbers_where_strings_belong_are_kept_as_their_exact_text(field, value, kept):
    record = ctr("n")
    record.setdefault(field[0], {})
    if len(field) == 1:
        record[field[0]] = value
    else:
        record[field[0]][field[1]] = value
    (line,), entries = flatten(encode(record))
    normalized = line[field[0].lower()]
    assert (normalized if len(field) == 1 else normalized[field[1].lower()]) == kept and entries == []


FIELDS = {
    ("channel",): "text", ("agent", "username"): "text", ("customerendpoint", "address"): "text",
    ("attributes", "free"): "any text", ("queue", "duration"): "integer", ("agent", "numberofholds"): "integer",
}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(FIELDS)), JSON_VALUES)
def test_any_json_value_in_a_documented_field_is_kept_losslessly_or_quarantined_at_its_path(path, value):
    record = ctr("v")
    holder = record
    for step in path[:-1]:
        holder = holder.setdefault(step, {})
    holder[path[-1]] = value
    lines, entries = flatten(encode(record))
    if entries:
        (entry,) = entries
        assert entry["reason"] == "type_conflict" and entry["detail"].startswith(".".join(path) + ":")
        return
    kept = lines[0]
    for step in path:
        kept = kept[step]
    kind = FIELDS[path]
    if value is None or isinstance(value, str):
        assert kept == value
    elif kind == "integer":
        assert kept == value and type(kept) is int
    else:
        # Its JSON text (with keys normalized by rule 2, which keeps every value): nothing lost.
        assert isinstance(kept, str) and json.loads(kept) == normalize_keys(value)[0]
    if kind == "text":
        assert not isinstance(value, (dict, list))


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1, 255, 256, 999, 1000, 1001, sys.getrecursionlimit() * 3, 100_000])
@pytest.mark.parametrize("opener, closer", [(b"[", b"]"), (b'{"a":', b"}")])
@pytest.mark.parametrize("where", ["value", "attribute", "unclosed"])
def test_deep_nesting_is_quarantined_as_too_deep_never_a_crash_and_neighbours_flow(depth, opener, closer, where):
    """`depth` counts the record itself as the outermost level."""
    head = b'{"ContactId":"deep","InitiationTimestamp":"' + INITIATED.encode() + b'",'
    if where == "value":
        middle = head + b'"Deep":' + opener * (depth - 1) + b"1" + closer * (depth - 1) + b"}"
    elif where == "attribute":
        middle = head + b'"Attributes":{"x":' + opener * (depth - 2) + b"1" + closer * (depth - 2) + b"}}"
    else:
        middle = head + b'"Deep":' + opener * depth
    data = encode(ctr("before")) + middle + (encode(ctr("after")) if where != "unclosed" else b"")
    lines, entries = flatten(data)
    written = [line["contactid"] for line in lines]
    if depth <= MAX_DEPTH and where != "unclosed":
        assert written == ["before", "deep", "after"] and entries == []
    else:
        assert written[0] == "before" and written[-1:] == (["after"] if where != "unclosed" else ["before"])
        assert "deep" not in written and entries
        assert {entry["reason"] for entry in entries} <= {"too_deep", "truncated", "invalid_json"}


def test_a_value_nested_to_the_limit_reaches_the_table_intact(connection, storage):
    deep = 1
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    key = put_flatfile(storage, "2026-11-27T10:05:00", ctr("deep", Deep=deep))
    merge_flatfiles(connection, storage, [key])
    (row,) = table(connection, storage, "contactid, deep")
    assert json.loads(row["deep"]) == deep  # deeper than a column may nest: kept as its JSON text


def test_32_kb_attributes_reach_the_table_byte_for_byte(connection, storage):
    awkward = 'Zoë says "}{" \\ \n\t 日本 😀 ' + "\u2028"
    values = {
        "transcript": (awkward * (ATTRIBUTE_LIMIT // len(awkward.encode())))[: ATTRIBUTE_LIMIT // 4],
        "ascii": "x" * ATTRIBUTE_LIMIT,
        "json_inside": json.dumps({"nested": ["}{"] * 3000})[:ATTRIBUTE_LIMIT],
    }
    assert all(len(value.encode()) >= ATTRIBUTE_LIMIT // 4 * 1 for value in values.values())
    records = [ctr("big-1", Attributes=values), ctr("big-2", Attributes={"k" * 1024: values["ascii"]})]
    lines, entries = flatten(b"".join(encode(record) for record in records))
    assert entries == [] and lines[0]["attributes"] == values
    key = put_flatfile(storage, "2026-11-27T10:05:00", *records)
    merge_flatfiles(connection, storage, [key])
    rows = {row["contactid"]: row["attributes"] for row in table(connection, storage, "contactid, attributes")}
    assert {name: rows["big-1"][name] for name in values} == values
    assert rows["big-2"]["k" * 1024] == values["ascii"]


def test_a_record_larger_than_any_firehose_record_is_quarantined_whole():
    huge = encode(ctr("huge", Attributes={"blob": "y" * (MAX_RECORD_BYTES + 1)}))
    lines, entries = flatten(encode(ctr("a")) + huge + encode(ctr("b")))
    assert [line["contactid"] for line in lines] == ["a", "b"]
    assert [(entry["reason"], entry["length"]) for entry in entries] == [("too_large", len(huge))]


def test_duplicate_keys_and_boms_everywhere_keep_every_value():
    data = BOM + b'{"ContactId":"d","InitiationTimestamp":"' + INITIATED.encode() + (
        b'","Attributes":{"k":"1","k":"2"},"Agent":{"Username":"a","Username":"b"}}' + BOM + BOM + b"\n"
    ) + BOM + encode(ctr("e"))
    lines, entries = flatten(data)
    assert entries == [] and [line["contactid"] for line in lines] == ["d", "e"]
    assert lines[0]["attributes"] == {"k": "1", "k_2": "2"}
    assert lines[0]["agent"] == {"username": "a", "username_2": "b"}


# Peak and current resident set from /proc: the peak (VmHWM) starts afresh at exec, where getrusage's
# ru_maxrss would still hold the forking test process's own size.
MEASURE = """
import json, re, sys, time
from ctr_assets.lake.pipeline import flatten_raw_object
from ctr_assets.lake.storage import LocalStorage

def kilobytes(field):
    return int(re.search(field + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))

baseline = kilobytes("VmRSS")
began = time.perf_counter()
stats = flatten_raw_object(LocalStorage(root=sys.argv[1]), sys.argv[2])
print(json.dumps({"records_in": stats.records_in, "written": stats.records_written, "baseline_kb": baseline,
                  "peak_kb": kilobytes("VmHWM"), "seconds": round(time.perf_counter() - began, 2)}))
"""


def test_a_128_mb_firehose_object_is_flattened_within_the_memory_of_one_object(storage):
    """Design §8: memory is bounded by one raw object. Measured as the peak resident set of a fresh
    process beyond what it held after its imports."""
    size = 128 * 1024 * 1024
    transcript = " ".join(["Zoë asked about the \\ \"premium\" plan", "日本", "😀", "tab\tand\nnewline"] * 800)
    record = encode(ctr("@@@@@@@@", Attributes={"transcript": transcript[: ATTRIBUTE_LIMIT - 64], "lang": "en"},
                        CustomerEndpoint={"Address": "+15551234567", "Type": "TELEPHONE_NUMBER"}))
    key = raw_key(SAMPLE_START, 59, "big")
    path = storage.path(key)
    path.parent.mkdir(parents=True)
    count = -(-size // len(record))
    with path.open("wb") as out:
        for number in range(count):
            out.write(record.replace(b"@@@@@@@@", b"%08d" % number))

    result = subprocess.run([sys.executable, "-c", MEASURE, str(storage.root_path), key],
                            capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    growth_mb = (measured["peak_kb"] - measured["baseline_kb"]) / 1024
    print(f"\n128 MiB object: {count} records in {measured['seconds']} s, peak RSS {measured['peak_kb'] / 1024:.0f} MB "
          f"({growth_mb:.0f} MB above the {measured['baseline_kb'] / 1024:.0f} MB after imports)")
    assert measured["records_in"] == measured["written"] == count
    assert storage.read(flat_key(key)).count(b"\n") == count
    assert growth_mb < 1.25 * size / 2**20
