"""The sample-data generator: deterministic, Firehose-shaped, internally consistent, and full of the quirks
the pipeline has to survive (design §2, §3)."""

from __future__ import annotations

import inspect
import json
import re
import sys
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from itertools import groupby

import pytest

from ctr_assets.sample import (
    CONTACT_MIX,
    SampleStats,
    generate_ctrs,
    write_firehose_objects,
)

START = datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
HOURS, CONTACTS_PER_HOUR = 6, 250
KEY = re.compile(
    r"raw/(\d{4})/(\d{2})/(\d{2})/(\d{2})/ctr-stream-1-(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-([0-9a-f-]{36})"
)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
E164 = re.compile(r"\+[1-9]\d{7,14}")
ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def written(**kwargs) -> tuple[dict[str, bytes], SampleStats]:
    objects: dict[str, bytes] = {}
    arguments = dict(start=START, hours=HOURS, contacts_per_hour=CONTACTS_PER_HOUR) | kwargs
    stats = write_firehose_objects(objects.__setitem__, **arguments)
    return objects, stats


def split(body: bytes) -> list[dict]:
    """Walk concatenated JSON the way the pipeline must: raw_decode, no text replacement, no separators."""
    text, decoder, position, records = body.decode("utf-8"), json.JSONDecoder(), 0, []
    while position < len(text):
        record, position = decoder.raw_decode(text, position)
        records.append(record)
    return records


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)  # the format itself is checked against TIMESTAMP


def normalized(key: str) -> str:
    return re.sub(r"\W+", "", key.lower())


class Sample:
    """One run's objects and their records, each record with the index and hour folder of its object."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.objects, self.stats = written(seed=seed)
        self.keys = sorted(self.objects)  # zero-padded arrival times: key order is arrival order
        self.deliveries = [
            (index, key[: len("raw/YYYY/MM/DD/HH")], record)
            for index, key in enumerate(self.keys)
            for record in split(self.objects[key])
        ]
        self.records = [record for _, _, record in self.deliveries]
        self.by_id = {record["ContactId"]: record for record in self.records}


@pytest.fixture(scope="module", params=[7, 2026])
def sample(request) -> Sample:
    return Sample(request.param)


def test_same_seed_gives_same_keys_and_bytes_and_another_seed_does_not():
    small = dict(hours=2, contacts_per_hour=40)
    first, first_stats = written(seed=11, **small)
    again, again_stats = written(seed=11, **small)
    other, _ = written(seed=12, **small)
    assert first == again and first_stats == again_stats
    assert not set(first) & set(other)
    assert set(first.values()).isdisjoint(other.values())
    assert list(generate_ctrs(START, 2, 40, seed=11)) == list(generate_ctrs(START, 2, 40, seed=11))


def test_naive_start_means_utc_and_start_must_be_on_the_hour():
    assert list(generate_ctrs(START.replace(tzinfo=None), 1, 20, seed=1)) == list(generate_ctrs(START, 1, 20, seed=1))
    with pytest.raises(ValueError, match="hour"):
        next(generate_ctrs(START + timedelta(minutes=5), 1, 20))


def test_keys_are_firehose_names_foldered_by_their_own_arrival_hour(sample):
    for key in sample.keys:
        match = KEY.fullmatch(key)
        assert match, key
        parts = match.groups()
        assert parts[:4] == parts[4:8], f"hour folder differs from the arrival time in the name: {key}"
        assert uuid.UUID(parts[10]).version == 4
    assert len({KEY.fullmatch(key).group(11) for key in sample.keys}) == len(sample.keys)


@pytest.mark.parametrize("batch_seconds", [60, 300])
def test_each_object_holds_one_arrival_window_named_by_its_last_arrival(batch_seconds):
    objects, stats = written(seed=5, hours=3, contacts_per_hour=60, batch_seconds=batch_seconds)
    arrivals = generate_ctrs(START, 3, 60, seed=5)
    windows = [list(group) for _, group in groupby(arrivals, key=lambda a: int(a[0].timestamp()) // batch_seconds)]
    assert len(windows) == len(objects) == stats.objects
    for key, window in zip(sorted(objects), windows, strict=True):
        last_arrival = window[-1][0]
        assert key.startswith(last_arrival.strftime("raw/%Y/%m/%d/%H/ctr-stream-1-%Y-%m-%d-%H-%M-%S-"))
        assert split(objects[key]) == [record for _, record in window]


def test_objects_are_compact_json_concatenated_with_no_separator(sample):
    for key in sample.keys:
        body = sample.objects[key]
        records = split(body)  # raw_decode does not skip whitespace: any separator would fail here
        assert records
        assert "".join(ENCODE(record) for record in records).encode("utf-8") == body


def test_stats_count_what_was_written(sample):
    assert sample.stats == SampleStats(
        objects=len(sample.objects),
        records=len(sample.records),
        contacts=len({record["ContactId"] for record in sample.records}),
    )
    assert sample.stats.contacts > HOURS * CONTACTS_PER_HOUR  # transfers add a second ContactId


def test_arrivals_are_ordered_and_follow_the_last_update():
    arrivals = list(generate_ctrs(START, 2, 100, seed=9))
    assert [a for a, _ in arrivals] == sorted(a for a, _ in arrivals)
    assert all(a.tzinfo is not None and a.utcoffset() == timedelta(0) for a, _ in arrivals)
    first_seen: set[str] = set()
    for arrival, record in arrivals:
        assert arrival > ts(record["LastUpdateTimestamp"])
        if record["ContactId"] not in first_seen:
            first_seen.add(record["ContactId"])
            assert arrival - ts(record["LastUpdateTimestamp"]) <= timedelta(minutes=2)
        if record["InitiationMethod"] != "TRANSFER":
            assert START <= ts(record["InitiationTimestamp"]) < START + timedelta(hours=2)


def test_timestamps_and_durations_are_consistent_in_every_record(sample):
    for record in sample.records:
        agent, queue = record["Agent"], record["Queue"]
        for value in _timestamps(record):
            assert TIMESTAMP.fullmatch(value), value
        chain = [
            record["InitiationTimestamp"],
            record["ConnectedToSystemTimestamp"],
            queue and queue["EnqueueTimestamp"],
            queue and queue["DequeueTimestamp"],
            agent and agent["ConnectedToAgentTimestamp"],
            agent and agent["AfterContactWorkStartTimestamp"],
            agent and agent["AfterContactWorkEndTimestamp"],
        ]
        present = [ts(value) for value in chain if value]
        assert present == sorted(present), record["ContactId"]
        initiation, disconnect = ts(record["InitiationTimestamp"]), ts(record["DisconnectTimestamp"])
        last_update = ts(record["LastUpdateTimestamp"])
        assert initiation <= disconnect <= last_update
        if queue is not None:
            assert (queue["EnqueueTimestamp"] is None) == (queue["DequeueTimestamp"] is None)
            if queue["EnqueueTimestamp"]:
                waited = ts(queue["DequeueTimestamp"]) - ts(queue["EnqueueTimestamp"])
                assert queue["Duration"] == waited.total_seconds()
            else:
                assert queue["Duration"] == 0
        if agent is not None:
            connected = ts(agent["ConnectedToAgentTimestamp"])
            work_start = ts(agent["AfterContactWorkStartTimestamp"])
            work_end = ts(agent["AfterContactWorkEndTimestamp"])
            durations = [agent[name] for name in _DURATIONS]
            assert all(isinstance(d, int) and d >= 0 for d in durations)
            assert agent["LongestHoldDuration"] <= agent["CustomerHoldDuration"]
            if agent["NumberOfHolds"] == 0:
                assert agent["CustomerHoldDuration"] == agent["LongestHoldDuration"] == 0
            else:
                assert agent["LongestHoldDuration"] > 0
            talk_and_hold = agent["AgentInteractionDuration"] + agent["CustomerHoldDuration"]
            assert (disconnect - connected).total_seconds() == talk_and_hold
            assert (work_end - work_start).total_seconds() == agent["AfterContactWorkDuration"]
            assert last_update >= work_end
        if record["TransferCompletedTimestamp"]:
            assert initiation <= ts(record["TransferCompletedTimestamp"]) <= disconnect


_DURATIONS = ("AgentInteractionDuration", "CustomerHoldDuration", "AfterContactWorkDuration", "LongestHoldDuration")


def _timestamps(value) -> list[str]:
    """Every *Timestamp value at any depth that is set."""
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k.endswith("Timestamp") and isinstance(v, str)]
        return found + [t for v in value.values() for t in _timestamps(v)]
    if isinstance(value, list):
        return [t for v in value for t in _timestamps(v)]
    return []


def _queued(r: dict) -> bool:
    return bool(r["Queue"] and r["Queue"]["EnqueueTimestamp"])


CATEGORIES = {
    "handled": lambda r: r["InitiationMethod"] == "INBOUND" and _queued(r) and r["Agent"] is not None,
    "abandoned": lambda r: (
        _queued(r) and r["Agent"] is None and r["InitiationMethod"] != "CALLBACK"
        and r["DisconnectReason"] == "CUSTOMER_DISCONNECT"
    ),
    "ivr_only": lambda r: (
        r["Queue"] is None and r["Agent"] is None and r["DisconnectReason"] == "CONTACT_FLOW_DISCONNECT"
    ),
    "outbound": lambda r: r["InitiationMethod"] == "OUTBOUND" and r["Agent"] is not None and not _queued(r),
    "callback handled": lambda r: r["InitiationMethod"] == "CALLBACK" and _queued(r) and r["Agent"] is not None,
    "callback never connected": lambda r: r["InitiationMethod"] == "CALLBACK" and _queued(r) and r["Agent"] is None,
    "transfer": lambda r: r["InitiationMethod"] == "TRANSFER" and r["PreviousContactId"] is not None,
    "holds": lambda r: r["Agent"] is not None and r["Agent"]["NumberOfHolds"] > 0,
    "recording": lambda r: r["Recording"] is not None and r["Recordings"][0]["Location"] == r["Recording"]["Location"],
    "chat": lambda r: r["Channel"] == "CHAT" and r["CustomerEndpoint"] is None and r["Agent"] is not None,
    "task": lambda r: r["Channel"] == "TASK" and r["CustomerEndpoint"] is None and r["Name"],
    "tags": lambda r: "Tags" in r,
    "segment attributes": lambda r: "SegmentAttributes" in r,
    "telecom problem": lambda r: r["DisconnectReason"] == "TELECOM_PROBLEM",
}


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_contact_type_appears(sample, category):
    assert any(CATEGORIES[category](record) for record in sample.records)


def test_the_mix_is_roughly_the_documented_one(sample):
    firsts = [r for r in sample.by_id.values() if r["InitiationMethod"] != "TRANSFER"]
    kinds = Counter(_kind(r) for r in firsts)
    for kind, channel, share in CONTACT_MIX:
        assert abs(kinds[kind, channel] / len(firsts) - share) < 0.05, (kind, channel, kinds)


def _kind(r: dict) -> tuple[str, str]:
    if r["InitiationMethod"] in ("OUTBOUND", "CALLBACK"):
        return r["InitiationMethod"].lower(), r["Channel"]
    if r["Queue"] is None:
        return "ivr_only", r["Channel"]
    return ("handled" if r["Agent"] else "abandoned"), r["Channel"]


def test_transfers_are_chained_segments_of_one_initial_contact(sample):
    seconds = [r for r in sample.by_id.values() if r["InitiationMethod"] == "TRANSFER"]
    assert seconds
    for second in seconds:
        first = sample.by_id[second["PreviousContactId"]]
        assert first["NextContactId"] == second["ContactId"]
        assert first["InitialContactId"] == second["InitialContactId"] == first["ContactId"]
        assert first["TransferCompletedTimestamp"] and first["TransferredToEndpoint"]["Address"]
        assert first["Queue"]["ARN"] != second["Queue"]["ARN"]
        assert second["CustomerEndpoint"] == first["CustomerEndpoint"]
        assert ts(first["InitiationTimestamp"]) <= ts(second["InitiationTimestamp"])
        assert ts(second["InitiationTimestamp"]) <= ts(first["TransferCompletedTimestamp"])
    assert all(r["NextContactId"] is None or r["NextContactId"] in sample.by_id for r in sample.records)


def test_updated_copies_arrive_in_a_later_hour_with_a_later_last_update(sample):
    versions: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for _, folder, record in sample.deliveries:
        if all(ENCODE(record) != ENCODE(seen) for _, seen in versions[record["ContactId"]]):
            versions[record["ContactId"]].append((folder, record))
    updated = {contact: v for contact, v in versions.items() if len(v) > 1}
    assert updated
    for (first_folder, first), (later_folder, later) in updated.values():
        assert later_folder > first_folder
        assert ts(later["LastUpdateTimestamp"]) > ts(first["LastUpdateTimestamp"])
        assert first | {"LastUpdateTimestamp": None} != later | {"LastUpdateTimestamp": None}


def test_exact_duplicates_arrive_in_the_same_or_the_next_object(sample):
    first_object: dict[str, int] = {}
    duplicates = 0
    for index, _, record in sample.deliveries:
        text = ENCODE(record)
        if text in first_object:
            duplicates += 1
            assert index - first_object[text] <= 1
        else:
            first_object[text] = index
    assert duplicates


def test_some_attribute_keys_collide_after_normalization_with_different_values(sample):
    colliding = []
    for record in sample.records:
        spellings = defaultdict(list)
        for key, value in record["Attributes"].items():
            spellings[normalized(key)].append((key, value))
        colliding += [pairs for pairs in spellings.values() if len(pairs) > 1]
    assert colliding
    assert all(len({value for _, value in pairs}) == len(pairs) for pairs in colliding)


def test_non_ascii_text_appears_in_values_keys_and_usernames(sample):
    attributes = [r["Attributes"] for r in sample.records]
    assert any(not value.isascii() for a in attributes for value in a.values())
    assert any(not key.isascii() for a in attributes for key in a)
    assert any(not r["Agent"]["Username"].isascii() for r in sample.records if r["Agent"])
    assert any(not body.isascii() for body in sample.objects.values())  # written as UTF-8, not \u escapes


def test_some_values_contain_braces_that_naive_splitting_would_break(sample):
    assert any("}{" in value for r in sample.records for value in r["Attributes"].values())


def test_agents_and_queues_are_a_stable_cast(sample):
    agents = {(r["Agent"]["Username"], r["Agent"]["ARN"]) for r in sample.records if r["Agent"]}
    queues = {(r["Queue"]["Name"], r["Queue"]["ARN"]) for r in sample.records if r["Queue"]}
    assert len(agents) == len({name for name, _ in agents}) == len({arn for _, arn in agents})
    assert len(queues) == len({name for name, _ in queues}) == len({arn for _, arn in queues})
    assert 5 <= len(agents) <= CONTACTS_PER_HOUR // 10
    assert 3 <= len(queues) <= 6
    (instance,) = {r["InstanceARN"] for r in sample.records}
    assert all(arn.startswith(f"{instance}/agent/") for _, arn in agents)
    assert all(arn.startswith(f"{instance}/queue/") for _, arn in queues)


def test_endpoints_are_phone_numbers_for_voice_only(sample):
    for record in sample.records:
        if record["Channel"] == "VOICE":
            assert E164.fullmatch(record["CustomerEndpoint"]["Address"])
            assert E164.fullmatch(record["SystemEndpoint"]["Address"])
            assert record["MediaStreams"] == [{"Type": "AUDIO"}]
        else:
            assert record["CustomerEndpoint"] is None and record["SystemEndpoint"] is None
            assert record["Recording"] is None


def test_generation_is_lazy_and_memory_stays_flat_over_20000_contacts():
    before = sys.getallocatedblocks()
    lazy = generate_ctrs(START, hours=2_000, contacts_per_hour=10, seed=1)
    assert inspect.isgenerator(lazy)
    assert next(lazy)[0] < START + timedelta(hours=2)
    # Producing the first record must not have built the other 20,000 contacts (~25 blocks each).
    assert sys.getallocatedblocks() - before < 20_000

    samples, records = [], 0
    for records, _ in enumerate(generate_ctrs(START, hours=100, contacts_per_hour=200, seed=1), start=1):
        if records % 500 == 0:
            samples.append(sys.getallocatedblocks())
    assert records > 20_000
    warmed_up = max(samples[len(samples) // 10 : len(samples) // 4])
    # Keeping every record would add hundreds of thousands of blocks; a bounded heap adds none.
    assert max(samples[len(samples) // 2 :]) - warmed_up < 20_000
