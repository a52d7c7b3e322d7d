"""Damaged records (design rules 1 and 6): a damaged record is one quarantine item, from its first byte to
the next record; nothing inside it passes for a record; every other record still flows; and finding where it
ends reads each byte of the object a bounded number of times, whatever the damage."""

import base64
import gzip
import io
import json
import re
import types

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ctr_assets.records import split
from ctr_assets.records.bulk import split_normalized
from ctr_assets.records.flatten import decompress, flatten_object
from ctr_assets.records.split import MAX_RECORD_BYTES, Record, Rejected, split_values
from ctr_assets_tests.test_bulk import needs_scanner

KEY = "raw/2026/11/27/10/ctr-stream-1-2026-11-27-10-05-00-0000"
INITIATED = "2026-11-27T10:00:00Z"
# Text with JSON's own characters, so damage meets `}{`, `{}`, quotes, brackets and escapes inside strings.
TEXT = st.text(alphabet=st.sampled_from([*'aZ 9}{][":,\\/\t', "ë", "日", "😀"]), max_size=10)
STYLES = st.sampled_from(["compact", "compact", "pretty", "ascii"])
GAPS = st.sampled_from([b"", b"", b"\n", b" \r\n"])
JUNK = re.compile(rb'[^"{\[]*')  # bytes before the first quote or bracket


def ctr(number: int, text: str = "x") -> dict:
    """A CTR with objects at several depths, a list of objects, and `text` in values and in a key."""
    return {
        "AWSAccountId": "123456789012",
        "ContactId": f"c{number}",
        "InitiationTimestamp": INITIATED,
        "Agent": {"Username": text, "HierarchyGroups": {"Level1": {"GroupName": text}}},
        "Attributes": {"note": text, "k" + text: "v"},
        "MediaStreams": [{"Type": "AUDIO"}, {"Type": text}],
        "Queue": {"Name": text, "Duration": number},
    }


def encode(record: dict, style: str = "compact") -> bytes:
    if style == "compact":
        return orjson.dumps(record)
    if style == "ascii":
        return json.dumps(record, separators=(",", ":")).encode()
    return json.dumps(record, indent=1, ensure_ascii=False).encode()


def flatten(data: bytes) -> tuple[list[dict], list[dict]]:
    """Written lines and quarantine entries; conservation holds and every entry keeps its exact bytes."""
    flat, quarantine = io.BytesIO(), io.BytesIO()
    stats = flatten_object(data, KEY, flat, quarantine)
    lines = [json.loads(line) for line in flat.getvalue().splitlines()]
    entries = [json.loads(line) for line in quarantine.getvalue().splitlines()]
    assert stats.records_in == stats.records_written + stats.records_quarantined == len(lines) + len(entries)
    payload = decompress(data)[0]
    for entry in entries:
        kept = entry["data"].encode() if "data" in entry else base64.b64decode(entry["data_base64"])
        source = data if entry.get("compressed") else payload
        assert kept == source[entry["offset"] : entry["offset"] + entry["length"]]
    return lines, entries


def as_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def complete_value_end(text: bytes) -> int | None:
    """Where the JSON object or list that `text` starts with ends, when the standard decoder reads one."""
    decoded = as_text(text)
    try:
        value, end = json.JSONDecoder().raw_decode(decoded)
    except (json.JSONDecodeError, ValueError, RecursionError):
        return None
    return len(decoded[:end].encode("utf-8", "surrogateescape")) if isinstance(value, (dict, list)) else None


def reads_through(text: bytes) -> bool:
    """Whether the standard decoder reads all of `text` as the start of one JSON value that goes on."""
    try:
        json.JSONDecoder().raw_decode(as_text(text))
    except json.JSONDecodeError as error:
        return error.msg.startswith("Unterminated") or error.pos >= len(as_text(text))
    return False


def assemble(parts: list[bytes], gaps: list[bytes]) -> tuple[bytes, list[int]]:
    data, starts = b"", []
    for gap, part in zip(gaps, parts):
        data += gap
        starts.append(len(data))
        data += part
    return data, starts


def nested_objects(value, depth: int = 0) -> list:
    """Every object inside `value` below its top level."""
    found = [value] if depth and isinstance(value, dict) else []
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return found + [inner for child in children for inner in nested_objects(child, depth + 1)]


def leading_values(text: bytes) -> tuple[list[tuple[int, int]], int]:
    """The ranges of the whole objects and lists that `text` starts with, each after bytes that hold no
    quote or bracket, and how many such runs of bytes come before them: what junk between records looks
    like (test_split's garbage property), which split.py cannot tell from a record cut at its head."""
    values, runs, position = [], 0, 0
    while True:
        junk_end = JUNK.match(text, position).end()
        length = complete_value_end(text[junk_end:])
        if length is None:
            return values, runs
        runs += junk_end > position and text[position:junk_end].strip() != b""
        values.append((junk_end, junk_end + length))
        position = junk_end + length


def assert_one_item(parts: list[bytes], gaps: list[bytes], damaged: int, original: dict, cut_short: bool) -> None:
    """`parts` are whole records but `parts[damaged]`, made from `original`. Every whole record flows as it
    was; the damaged bytes are one quarantine item that runs to the next record; no object from inside the
    damaged record passes for a record. What the bytes cannot tell from that, and split.py documents:
    - damaged bytes that start with whole objects or lists (an extra `}` ends a record early; `}{` makes
      two; an object begins at a nested value), maybe after junk-like bytes with no quote or bracket,
      give those values (and the junk) besides the item;
    - damaged bytes that read the whole next record as part of themselves (a record cut where a value was
      expected) keep that record in their item;
    - damage that leaves junk and then a whole record (`{{...}`) gives that record.
    A record cut short at its end (`cut_short`) is exactly one item."""
    data, starts = assemble(parts, gaps)
    damaged_part = parts[damaged]
    following = damaged + 1 < len(parts)
    absorbed = following and reads_through(damaged_part + gaps[damaged + 1] + parts[damaged + 1])
    resume = damaged + 1 + absorbed
    item_end = starts[resume] if resume < len(parts) else len(data)
    whole = [number for number in range(len(parts)) if number != damaged and not (absorbed and number == resume - 1)]
    values, junk_runs = leading_values(damaged_part)
    leading = {(starts[damaged] + start, starts[damaged] + end) for start, end in values}

    pieces = list(split_values(data))
    outside = [piece for piece in pieces if not starts[damaged] <= piece.start < item_end]
    inside = [piece for piece in pieces if starts[damaged] <= piece.start < item_end]
    assert [(piece.start, piece.end) for piece in outside] == [(starts[n], starts[n] + len(parts[n])) for n in whole]
    assert all(isinstance(piece, Record) for piece in outside)
    assert inside[0].start == starts[damaged]
    assert all(data[before.end : after.start].strip() == b"" for before, after in zip(inside, inside[1:]))
    assert data[inside[-1].end : item_end].strip() == b""
    assert sum(isinstance(piece, Rejected) for piece in inside) <= 1 + junk_runs
    assert len(inside) == (1 if cut_short else len(inside)) <= 2 + junk_runs + max(len(values) - 1, 0)
    phantoms = nested_objects(json.loads(json.dumps(original)))
    records = [piece for piece in inside if isinstance(piece, Record) and (piece.start, piece.end) not in leading]
    assert not [piece for piece in records if piece.value in phantoms]

    lines, entries = flatten(data)  # the production path: bulk scanner, per-record path, field checks
    written = [line["contactid"] for line in lines]
    assert set(written) - {f"c{damaged}"} == {f"c{number}" for number in whole}
    assert len(lines) + len(entries) == len(whole) + len(inside)


def damage_one(records, data) -> tuple[list[bytes], list[bytes], int, dict]:
    texts, styles, gaps = map(list, zip(*records))
    originals = [ctr(number, text) for number, text in enumerate(texts)]
    parts = [encode(record, style) for record, style in zip(originals, styles)]
    damaged = data.draw(st.integers(0, len(parts) - 1))
    return parts, gaps, damaged, originals[damaged]


RECORDS = st.lists(st.tuples(TEXT, STYLES, GAPS), min_size=2, max_size=5)


@settings(max_examples=300, deadline=None)
@given(RECORDS, st.data())
def test_a_record_cut_short_anywhere_is_one_item_and_every_other_record_flows(records, data):
    parts, gaps, damaged, original = damage_one(records, data)
    parts[damaged] = parts[damaged][: data.draw(st.integers(1, len(parts[damaged]) - 1))]
    assert_one_item(parts, gaps, damaged, original, cut_short=True)


DAMAGE_BYTES = st.sampled_from([b"x", b"{", b"[", b"}", b"]", b'"', b"\\", b",", b":", b"\x00", b"\xff", b"}{", b"{}"])


@settings(max_examples=400, deadline=None)
@given(RECORDS, st.data())
def test_a_record_with_bytes_inserted_deleted_or_replaced_is_one_item_and_every_other_record_flows(records, data):
    parts, gaps, damaged, original = damage_one(records, data)
    part = parts[damaged]
    at = data.draw(st.integers(1, len(part) - 2))
    change = data.draw(st.sampled_from(["insert", "delete", "replace"]))
    damage = data.draw(DAMAGE_BYTES)
    if change == "insert":
        part = part[:at] + damage + part[at:]
    elif change == "delete":
        part = part[:at] + part[at + 1 :]
    else:
        part = part[:at] + damage + part[at + 1 :]
    assume(complete_value_end(part) != len(part))  # still one whole value: not damaged
    parts[damaged] = part
    assert_one_item(parts, gaps, damaged, original, cut_short=False)


@settings(max_examples=200, deadline=None)
@given(RECORDS, st.data())
def test_an_object_that_starts_inside_a_record_is_one_item_and_every_other_record_flows(records, data):
    parts, gaps, _, _ = damage_one(records, data)
    original = ctr(0, records[0][0])
    parts[0] = parts[0][data.draw(st.integers(1, len(parts[0]) - 1)) :].lstrip()
    gaps[0] = b""
    assert_one_item(parts, gaps, 0, original, cut_short=False)


# Shapes of damage in one large record whose attributes are many small objects (each a would-be record once
# the CTR is damaged) with `}{`, `{}` and escaped JSON in their strings.
def large_record(size: int, style: str) -> bytes:
    attributes = {f"k{number}": {"v": number, "s": '}{"x":1}{}'} for number in range(size // 40)}
    return encode({**ctr(1), "Attributes": attributes}, style)


def _from(text: bytes, token: bytes, at: int) -> int:
    """Where `token` occurs at `at` or after it, else its last place before (a small record near its end)."""
    found = text.find(token, at)
    return found if found >= 0 else text.rindex(token)


def damaged_large_record(shape: str, size: int, where: float) -> bytes:
    """One damaged record of about `size` bytes; `where` (0 to 1) places the damage."""
    text = large_record(size, "pretty" if shape.endswith("pretty") else "compact")
    at = max(1, int(len(text) * where))
    if shape.startswith("cut"):  # inside a string: a cut where a value belongs would take in the next record
        return text[: _from(text, b'"}{', at) + 1]
    if shape == "junk":
        comma = _from(text, b",", at)
        return text[:comma] + b"x" + text[comma + 1 :]
    if shape == "quote":
        return text[:at] + b'"' + text[at:]
    if shape == "missing_closer":
        closer = _from(text, b"}},", at)
        return text[:closer] + text[closer + 1 :]
    if shape == "wrong_closer":
        closer = _from(text, b"}},", at)
        return text[:closer] + b"]" + text[closer + 1 :]
    if shape == "head_cut":
        return text[_from(text, b',"k', at) + 1 :]
    if shape == "giant_string":  # cut inside it
        note = orjson.dumps({**ctr(1), "Note": '}{"x":1}{} {\\"a\\":1} \\' * (size // 20)})
        opening = note.index(b'"Note":"') + 8
        return note[: opening + int((len(note) - opening) * where)]
    if shape == "deep":
        return b'{"ContactId":"c1","Deep":' + b'[{"a":' * (size // 6) + b"1"
    if shape == "brackets":
        return b'{"ContactId":"c1","X":' + b'{"a":[' * (size // 6) + b"}"
    if shape == "nested":  # junk, then objects nested in each other as deep as the decoder reads
        depth = min(size // 6, 900)
        return b'{"ContactId":"c1","X":1x,"N":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    raise ValueError(shape)


PER_ITEM = 3 * split.EXACT_WINDOWS[0]
SHAPES = ["cut", "cut_pretty", "junk", "quote", "missing_closer", "wrong_closer", "head_cut", "giant_string", "deep",
          "brackets", "nested"]


class Work:
    """What splitting costs, counted where the cost is: bytes turned into text for a decoder, characters
    a JSON decoder reads, bytes given to orjson. A record may be read a few times; an object, not once per
    would-be record in it. A damaged item may also cost a few first decode windows (`PER_ITEM`): turning
    bytes into text is a copy, many times cheaper per byte than decoding them."""

    def __init__(self, monkeypatch):
        self.bytes = 0
        as_text, loads = split._as_text, orjson.loads
        monkeypatch.setattr(split, "_as_text", lambda window, encoding: self.count(len(window)) or as_text(window, encoding))
        monkeypatch.setattr(split, "orjson", types.SimpleNamespace(
            loads=lambda piece: self.count(len(piece)) or loads(piece), dumps=orjson.dumps,
            JSONDecodeError=orjson.JSONDecodeError))
        for name in ("_EXACT_DECODER", "_LENIENT_DECODER"):
            monkeypatch.setattr(split, name, self.Reads(getattr(split, name), self))

    def count(self, size: int) -> None:
        self.bytes += size

    class Reads:
        def __init__(self, decoder, work):
            self.decoder, self.work = decoder, work

        def raw_decode(self, text, index=0):
            try:
                value, end = self.decoder.raw_decode(text, index)
            except json.JSONDecodeError as error:
                self.work.count(error.pos - index)
                raise
            except (ValueError, RecursionError):
                self.work.count(len(text) - index)
                raise
            self.work.count(end - index)
            return value, end


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SHAPES), st.integers(1024, 256 * 1024), st.floats(0.1, 0.9), GAPS)
def test_a_large_damaged_record_is_one_item_read_a_bounded_number_of_times(shape, size, where, gap):
    """Before, each `{` inside a damaged record was tried as a record with a 64 KiB and a 4 MiB window: a
    512 KiB record cost 56 s and 104,865 quarantine items."""
    damaged = damaged_large_record(shape, size, where)
    data = encode(ctr(0)) + gap + damaged + gap + encode(ctr(2))
    with pytest.MonkeyPatch.context() as monkeypatch:
        work = Work(monkeypatch)
        lines, entries = flatten(data)
    assert [line["contactid"] for line in lines] == ["c0", "c2"]
    assert [(entry["offset"], entry["length"]) for entry in entries] == [(len(encode(ctr(0))) + len(gap), len(damaged) + len(gap))]
    assert work.bytes <= 8 * len(data) + PER_ITEM * len(entries)


def test_many_damaged_records_in_one_object_are_read_a_bounded_number_of_times(monkeypatch):
    """Each damaged record is read once to where it stops being JSON, not to the end of the object."""
    parts = [encode(ctr(number)) for number in range(2000)]
    damaged = list(range(1, 2000, 10))
    for number in damaged:
        parts[number] = parts[number].replace(b'"Queue":{', b'"Queue":x{')
    data = b"".join(parts)
    work = Work(monkeypatch)
    lines, entries = flatten(data)
    assert len(lines) == 2000 - len(damaged) and [entry["offset"] for entry in entries] == [
        sum(map(len, parts[:number])) for number in damaged
    ]
    assert work.bytes <= 8 * len(data) + PER_ITEM * len(entries)


@pytest.mark.parametrize("gap", [b"", b"\n", b" \r\n", b"\t"])
@pytest.mark.parametrize("last", [b":", b"[", b",", b"{", b"x"])
def test_a_record_cut_inside_a_string_never_takes_in_the_next_record(gap, last):
    """The string runs into the next record's `{"` or stops at the newline before it; what the string held
    last before the cut (a `:` looks like a key's) does not matter."""
    cut = encode(ctr(1))[: encode(ctr(1)).index(b'"Username":"') + 12] + b"ab" + last
    data = encode(ctr(0)) + cut + gap + encode(ctr(2))
    lines, entries = flatten(data)
    assert [line["contactid"] for line in lines] == ["c0", "c2"]
    assert [(entry["offset"], entry["length"]) for entry in entries] == [(len(encode(ctr(0))), len(cut) + len(gap))]


@pytest.mark.parametrize("style", ["compact", "pretty"])
@pytest.mark.parametrize("damage", ["none", "junk after the limit", "cut after the limit"])
def test_a_record_over_the_size_limit_is_one_item_and_nothing_inside_it_passes_for_a_contact(style, damage):
    """Its attributes are whole CTRs: before, a non-compact one was cut at the limit and every CTR inside
    it after that was written as a contact."""
    inner = {f"k{number}": ctr(1000 + number) for number in range(MAX_RECORD_BYTES // 200)}
    huge = encode({**ctr(1), "Attributes": inner}, style)
    assert len(huge) > MAX_RECORD_BYTES
    if damage == "junk after the limit":
        comma = huge.index(b",", MAX_RECORD_BYTES + 10)
        huge = huge[:comma] + b"x" + huge[comma + 1 :]
    elif damage == "cut after the limit":
        huge = huge[: huge.index(b'"c1', MAX_RECORD_BYTES + 10) + 2]
    data = encode(ctr(0)) + huge + encode(ctr(2))
    lines, entries = flatten(data)
    assert [line["contactid"] for line in lines] == ["c0", "c2"]
    assert [(entry["reason"], entry["offset"], entry["length"]) for entry in entries] == [
        ("too_large", len(encode(ctr(0))), len(huge))
    ]


@pytest.mark.parametrize("damaged", [
    b'{"ContactId":"c1","X":1x,"Queue":{"Name":"q"}',  # junk, then cut right after a nested object
    b':{"Username":"u","HierarchyGroups":{}},"Queue":{"Name":"q"}}',  # begins at a nested object, members after it
    b',{"Type":"VIDEO"}],"Queue":{"Name":"q"}}',  # begins inside a list of objects
])
def test_objects_inside_a_damaged_record_never_pass_for_records(damaged):
    data = encode(ctr(0)) + damaged + b"\n"
    lines, entries = flatten(data)
    assert [line["contactid"] for line in lines] == ["c0"]
    assert [(entry["offset"], entry["length"]) for entry in entries] == [(len(encode(ctr(0))), len(damaged) + 1)]


def test_several_damaged_records_in_one_object_are_one_item_each():
    records = [encode(ctr(number), "pretty" if number % 3 == 0 else "compact") for number in range(30)]
    damaged = {
        3: records[3][:100],  # cut inside a string
        8: records[8].replace(b'"Queue":{', b'"Queue":x{'),  # junk before a nested object
        14: records[14].replace(b'},"Attributes"', b',"Attributes"'),  # a missing closer
        20: records[20].replace(b'"AUDIO"', b'"AUD"IO"'),  # a quote too many
        29: records[29][: len(records[29]) // 2],  # cut at the end of the object
    }
    parts = [damaged.get(number, record) for number, record in enumerate(records)]
    lines, entries = flatten(b"\n".join(parts))
    assert [line["contactid"] for line in lines] == [f"c{number}" for number in range(30) if number not in damaged]
    starts = [sum(len(part) + 1 for part in parts[:number]) for number in range(30)]
    assert [entry["offset"] for entry in entries] == [starts[number] for number in sorted(damaged)]


def test_junk_and_bare_values_between_records_are_one_item_with_their_range():
    data = b'{"a":1} 12 "x" true {"b":2}[1]"k": 3{"c":3}'
    assert [(type(piece).__name__, piece.start, piece.end) for piece in split_values(data)] == [
        ("Record", 0, 7), ("Rejected", 8, 20), ("Record", 20, 27), ("Record", 27, 30), ("Rejected", 30, 36),
        ("Record", 36, 43),
    ]


def test_an_extra_closer_ends_a_record_early_and_the_rest_of_it_is_one_item():
    """What split.py cannot tell from a whole record followed by junk: the record up to the closer is
    one; none of the objects after it passes for a record."""
    early = encode(ctr(1)).replace(b'"Username":"x"', b'"Username":"x"}', 1)
    first = complete_value_end(early)
    assert first < len(early)
    pieces = list(split_values(encode(ctr(0)) + early + encode(ctr(2))))
    offset = len(encode(ctr(0)))
    assert [(type(piece).__name__, piece.start - offset, piece.end - offset) for piece in pieces[1:3]] == [
        ("Record", 0, first), ("Rejected", first, len(early))
    ]
    assert len(pieces) == 4


def test_a_record_cut_where_a_value_belongs_takes_in_the_next_record_and_the_one_after_flows():
    """What split.py cannot tell from a record whose last value is an object and which lacks its `}`."""
    cut = encode(ctr(1))[: encode(ctr(1)).index(b'"Queue":') + len(b'"Queue":')]
    data = encode(ctr(0)) + cut + encode(ctr(2)) + encode(ctr(3))
    lines, entries = flatten(data)
    assert [line["contactid"] for line in lines] == ["c0", "c3"]
    assert [(entry["offset"], entry["length"]) for entry in entries] == [
        (len(encode(ctr(0))), len(cut) + len(encode(ctr(2))))
    ]


@needs_scanner
def test_records_after_a_damaged_one_are_made_in_bulk_again():
    """The per-record path takes the damaged item only: the scanner goes on after it."""
    data = encode(ctr(0)) + encode(ctr(1))[:50] + b"".join(encode(ctr(number)) for number in range(2, 6))
    pieces = list(split_normalized(data))
    assert [type(piece).__name__ for piece in pieces] == ["NormalizedRecord", "Rejected"] + ["NormalizedRecord"] * 4
    assert all(piece.text is not None for piece in pieces[2:])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), st.data())
def test_a_damaged_gzip_member_costs_only_its_own_records(sizes, data):
    """Before, every member after a corrupt one, or after bytes that are not a member, was lost into one
    item with it."""
    numbers = [list(range(sum(sizes[:member]), sum(sizes[: member + 1]))) for member in range(len(sizes))]
    members = [gzip.compress(b"".join(encode(ctr(number)) for number in group), mtime=0) for group in numbers]
    damaged = data.draw(st.integers(0, len(members) - 1))
    kind = data.draw(st.sampled_from(["corrupt", "cut", "junk after", "padding"]))
    member = members[damaged]
    if kind == "corrupt":  # a byte of the checksum or length that ends the member
        at = data.draw(st.integers(len(member) - 8, len(member) - 1))
        members[damaged] = member[:at] + bytes([member[at] ^ data.draw(st.integers(1, 255))]) + member[at + 1 :]
    elif kind == "cut":
        members[damaged] = member[: data.draw(st.integers(10, len(member) - 1))]
    elif kind == "junk after":
        members[damaged] = member + data.draw(st.binary(min_size=1, max_size=20).filter(lambda junk: b"\x1f" not in junk and junk.strip(b"\0")))
    else:
        members[-1] += b"\0" * data.draw(st.integers(1, 8))
    blob = b"".join(members)
    start = sum(map(len, members[:damaged]))

    lines, entries = flatten(blob)

    written = [int(line["contactid"][1:]) for line in lines]
    others = [number for group in numbers[:damaged] + numbers[damaged + 1 :] for number in group]
    own = [number for number in written if number in numbers[damaged]]
    assert [number for number in written if number not in numbers[damaged]] == others
    gzip_items = [(entry["offset"], entry["offset"] + entry["length"]) for entry in entries if entry["reason"] == "invalid_gzip"]
    if kind in ("corrupt", "cut"):  # a cut member keeps the records it decoded, a corrupt one none
        assert own == ([] if kind == "corrupt" else numbers[damaged][: len(own)])
        assert gzip_items == [(start, start + len(members[damaged]))]
    elif kind == "junk after":
        assert own == numbers[damaged] and gzip_items == [(start + len(member), start + len(members[damaged]))]
    else:
        assert own == numbers[damaged] and gzip_items == []
    assert len(entries) - len(gzip_items) <= (kind == "cut")  # the record the cut went through
