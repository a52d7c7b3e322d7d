"""The sample-data generator: deterministic per hour, Firehose-shaped, internally consistent, with the contacts
real Connect instances produce and the quirks the pipeline has to survive (design §2, §3; issues 14 and 15)."""

from __future__ import annotations

import gzip
import inspect
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from itertools import groupby
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.sample import (
    CONTACT_MIX,
    SUPERVISORS,
    SampleStats,
    generate_ctrs,
    write_firehose_objects,
)

START = datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
HOURS, CONTACTS_PER_HOUR = 6, 250
KEY = re.compile(
    r"raw/(\d{4})/(\d{2})/(\d{2})/(\d{2})/ctr-stream-1-(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-([0-9a-f-]{36})"
    r"(\.gz)?"
)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")
E164 = re.compile(r"\+[1-9]\d{7,14}")
AGENT_QUEUE = re.compile(r"/queue/agent/([^/]+)$")
ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
CTR_ASSETS = Path(sys.executable).with_name("ctr-assets")


def written(**kwargs) -> tuple[dict[str, bytes], SampleStats]:
    objects: dict[str, bytes] = {}
    arguments = dict(start=START, hours=HOURS, contacts_per_hour=CONTACTS_PER_HOUR) | kwargs
    stats = write_firehose_objects(objects.__setitem__, **arguments)
    return objects, stats


def body(key: str, data: bytes) -> bytes:
    return gzip.decompress(data) if key.endswith(".gz") else data


def split(data: bytes) -> list[dict]:
    """Walk concatenated JSON the way the pipeline must: raw_decode, no text replacement, no separators."""
    text, decoder, position, records = data.decode("utf-8"), json.JSONDecoder(), 0, []
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
            for record in split(body(key, self.objects[key]))
        ]
        self.records = [record for _, _, record in self.deliveries]
        self.by_id = {record["ContactId"]: record for record in self.records}  # the last copy of each

    def next_method(self, record: dict) -> str | None:
        following = self.by_id.get(record["NextContactId"] or "")
        return following and following["InitiationMethod"]


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


def initial_contacts(start: datetime, hours: int, hour: datetime) -> dict[str, str]:
    """ContactId -> JSON of the first copy of every contact initiated in `hour`, generated as part of a range."""
    found = {}
    for _, record in generate_ctrs(start, hours, 30, seed=3):
        if record["PreviousContactId"] is None and hour <= ts(record["InitiationTimestamp"]) < hour + timedelta(hours=1):
            found.setdefault(record["ContactId"], ENCODE(record))
    return found


def test_an_hour_has_the_same_contacts_in_any_range_and_another_hour_has_others():
    """Simulating one more hour adds contacts: it neither regenerates nor replaces the ones already written."""
    hour = START + timedelta(hours=1)
    alone = initial_contacts(hour, 1, hour)
    assert alone and initial_contacts(START, 3, hour) == alone == initial_contacts(hour, 2, hour)
    assert not set(initial_contacts(START, 1, START)) & set(alone)


def test_one_more_hour_adds_objects_and_replaces_none():
    before, _ = written(hours=2, contacts_per_hour=40)
    after, _ = written(start=START + timedelta(hours=2), hours=1, contacts_per_hour=40)
    again, _ = written(hours=2, contacts_per_hour=40)
    assert again == before  # the same range writes the same keys with the same bytes
    assert not set(before) & set(after)  # keys follow the bytes: another hour's objects have their own keys


@settings(max_examples=20, deadline=None)
@given(hours_until=st.floats(0, 6))
def test_nothing_is_written_that_arrives_after_until(hours_until):
    until = START + timedelta(hours=hours_until)
    objects, stats = written(hours=4, contacts_per_hour=30, until=until)
    everything, everything_stats = written(hours=4, contacts_per_hour=30)
    arrivals = [KEY.fullmatch(key).groups()[4:10] for key in objects]
    assert all(datetime(*map(int, parts), tzinfo=timezone.utc) <= until for parts in arrivals)
    assert stats.records + stats.held_back == everything_stats.records
    if not stats.held_back:
        assert objects == everything


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


def test_some_objects_are_gzip_compressed(sample):
    compressed = [key for key in sample.keys if key.endswith(".gz")]
    assert 0.03 < len(compressed) / len(sample.keys) < 0.2
    assert all(sample.objects[key][:2] == b"\x1f\x8b" for key in compressed)


@pytest.mark.parametrize("batch_seconds", [60, 300])
def test_each_object_holds_one_arrival_window_named_by_its_last_arrival(batch_seconds):
    objects, stats = written(seed=5, hours=3, contacts_per_hour=60, batch_seconds=batch_seconds)
    arrivals = generate_ctrs(START, 3, 60, seed=5)
    windows = [list(group) for _, group in groupby(arrivals, key=lambda a: int(a[0].timestamp()) // batch_seconds)]
    assert len(windows) == len(objects) == stats.objects
    for key, window in zip(sorted(objects), windows, strict=True):
        last_arrival = window[-1][0]
        assert key.startswith(last_arrival.strftime("raw/%Y/%m/%d/%H/ctr-stream-1-%Y-%m-%d-%H-%M-%S-"))
        assert split(body(key, objects[key])) == [record for _, record in window]


def test_objects_are_compact_json_concatenated_with_no_separator(sample):
    for key in sample.keys:
        data = body(key, sample.objects[key])
        records = split(data)  # raw_decode does not skip whitespace: any separator would fail here
        assert records
        assert "".join(ENCODE(record) for record in records).encode("utf-8") == data


def test_stats_count_what_was_written(sample):
    assert sample.stats == SampleStats(
        objects=len(sample.objects),
        records=len(sample.records),
        contacts=len({record["ContactId"] for record in sample.records}),
    )
    assert sample.stats.contacts > HOURS * CONTACTS_PER_HOUR  # chains add ContactIds


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
        initial = record["PreviousContactId"] is None and record["InitiationMethod"] != "MONITOR"
        if initial and record["DisconnectReason"] != "EXPIRED":  # an expiring task was created a week before
            assert START <= ts(record["InitiationTimestamp"]) < START + timedelta(hours=2)


def test_timestamps_and_durations_are_consistent_in_every_record(sample):
    for record in sample.records:
        agent, queue = record["Agent"], record["Queue"]
        stamps = _timestamps(record)
        for value in stamps:
            assert TIMESTAMP.fullmatch(value), value
        assert len({value[19:] for value in stamps}) == 1, record["ContactId"]  # one chain, one millisecond
        chain = [
            record["InitiationTimestamp"],
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
        if record["ConnectedToSystemTimestamp"]:
            assert initiation <= ts(record["ConnectedToSystemTimestamp"]) <= disconnect
        if queue is not None:
            assert (queue["EnqueueTimestamp"] is None) == (queue["DequeueTimestamp"] is None)
            if queue["EnqueueTimestamp"]:
                waited = ts(queue["DequeueTimestamp"]) - ts(queue["EnqueueTimestamp"])
                assert queue["Duration"] == waited.total_seconds()
            else:
                assert queue["Duration"] == 0
        if agent is not None and agent["ConnectedToAgentTimestamp"]:
            connected = ts(agent["ConnectedToAgentTimestamp"])
            work_start = ts(agent["AfterContactWorkStartTimestamp"])
            durations = [agent[name] for name in _DURATIONS]
            assert all(isinstance(d, int) and d >= 0 for d in durations)
            assert agent["LongestHoldDuration"] <= agent["CustomerHoldDuration"]
            if agent["NumberOfHolds"] == 0:
                assert agent["CustomerHoldDuration"] == agent["LongestHoldDuration"] == 0
            else:
                assert agent["LongestHoldDuration"] > 0
            left = connected + timedelta(seconds=agent["AgentInteractionDuration"] + agent["CustomerHoldDuration"])
            assert left == work_start == ts(record["TransferCompletedTimestamp"] or record["DisconnectTimestamp"])
            if agent["AfterContactWorkEndTimestamp"] is None:  # sent before the after-contact work ended
                assert agent["AfterContactWorkDuration"] is None and last_update == disconnect
            else:
                work_end = ts(agent["AfterContactWorkEndTimestamp"])
                assert (work_end - work_start).total_seconds() == agent["AfterContactWorkDuration"]
                assert last_update >= work_end
        if record["TransferCompletedTimestamp"]:
            assert initiation <= ts(record["TransferCompletedTimestamp"]) <= disconnect


_DURATIONS = ("AgentInteractionDuration", "CustomerHoldDuration", "LongestHoldDuration")


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


def _connected(r: dict) -> bool:
    return bool(r["Agent"] and r["Agent"]["ConnectedToAgentTimestamp"])


CATEGORIES = {
    "handled": lambda s, r: r["InitiationMethod"] == "INBOUND" and _queued(r) and _connected(r),
    "abandoned": lambda s, r: (
        _queued(r) and not _connected(r) and r["InitiationMethod"] != "CALLBACK" and r["NextContactId"] is None
        and r["DisconnectReason"] == "CUSTOMER_DISCONNECT"
    ),
    "abandoned after an agent missed it": lambda s, r: _queued(r) and r["Agent"] and not _connected(r),
    "ivr only": lambda s, r: (
        r["Queue"] is None and r["Agent"] is None and r["DisconnectReason"] == "CONTACT_FLOW_DISCONNECT"
    ),
    "outbound": lambda s, r: r["InitiationMethod"] == "OUTBOUND" and _connected(r) and not _queued(r),
    "unanswered outbound": lambda s, r: r["InitiationMethod"] == "OUTBOUND" and r["ConnectedToSystemTimestamp"] is None,
    "callback request": lambda s, r: _queued(r) and not _connected(r) and s.next_method(r) == "CALLBACK",
    "callback after an initial delay": lambda s, r: (
        r["InitiationMethod"] == "CALLBACK" and ts(r["Queue"]["EnqueueTimestamp"]) > ts(r["InitiationTimestamp"])
    ),
    "callback handled": lambda s, r: r["InitiationMethod"] == "CALLBACK" and _queued(r) and _connected(r),
    "callback expired": lambda s, r: r["InitiationMethod"] == "CALLBACK" and _queued(r) and not _connected(r),
    "queue move": lambda s, r: _queued(r) and not _connected(r) and s.next_method(r) == "QUEUE_TRANSFER",
    "abandoned in the second queue": lambda s, r: (
        r["InitiationMethod"] == "QUEUE_TRANSFER" and not _connected(r) and r["DisconnectReason"] == "CUSTOMER_DISCONNECT"
    ),
    "transfer to a queue": lambda s, r: r["InitiationMethod"] == "TRANSFER" and r["Queue"]["Name"] is not None,
    "transfer to an agent": lambda s, r: (
        r["InitiationMethod"] == "TRANSFER" and r["Queue"]["Name"] is None and AGENT_QUEUE.search(r["Queue"]["ARN"])
    ),
    "transfer out of connect": lambda s, r: (
        r["TransferCompletedTimestamp"] is not None and r["TransferredToEndpoint"] and r["NextContactId"] is None
    ),
    "monitor": lambda s, r: r["InitiationMethod"] == "MONITOR" and r["Agent"]["Username"].startswith("supervisor."),
    "survey": lambda s, r: r["InitiationMethod"] == "DISCONNECT" and r["Queue"] is None,
    "holds": lambda s, r: r["Agent"] is not None and r["Agent"]["NumberOfHolds"] > 0,
    "recording": lambda s, r: (
        r["Recording"] is not None and r["Recordings"][0]["Location"] == r["Recording"]["Location"]
    ),
    "chat": lambda s, r: r["Channel"] == "CHAT" and r["CustomerEndpoint"] is None and _connected(r),
    "task": lambda s, r: r["Channel"] == "TASK" and r["CustomerEndpoint"] is None and r["Name"],
    "task expired": lambda s, r: r["Channel"] == "TASK" and r["DisconnectReason"] == "EXPIRED" and not _connected(r),
    "task ended by the API": lambda s, r: r["Channel"] == "TASK" and r["DisconnectReason"] == "API",
    "chat agent disconnect": lambda s, r: r["Channel"] == "CHAT" and r["DisconnectReason"] == "AGENT_DISCONNECT",
    "null disconnect reason": lambda s, r: r["DisconnectReason"] is None,
    "telecom problem": lambda s, r: r["DisconnectReason"] == "TELECOM_PROBLEM",
    "millisecond timestamps": lambda s, r: "." in r["InitiationTimestamp"],
    "whole-second timestamps": lambda s, r: "." not in r["InitiationTimestamp"],
    "tags": lambda s, r: "Tags" in r,
    "segment attributes": lambda s, r: "SegmentAttributes" in r,
    "contact lens": lambda s, r: r.get("ContactLens", {}).get("ConversationalAnalytics", {}).get("Configuration"),
    "disconnect details": lambda s, r: "PotentialDisconnectIssue" in r.get("DisconnectDetails", {}),
    "campaign": lambda s, r: r["InitiationMethod"] == "OUTBOUND" and "CampaignId" in r.get("Campaign", {}),
}


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_contact_type_appears(sample, category):
    assert any(CATEGORIES[category](sample, record) for record in sample.records)


def test_the_mix_is_roughly_the_documented_one(sample):
    firsts = [r for r in sample.by_id.values() if r["PreviousContactId"] is None and r["InitiationMethod"] != "MONITOR"]
    kinds = Counter(_kind(sample, r) for r in firsts)
    for kind, channel, share in CONTACT_MIX:
        assert abs(kinds[kind, channel] / len(firsts) - share) < 0.05, (kind, channel, kinds)


def _kind(sample: Sample, r: dict) -> tuple[str, str]:
    if r["InitiationMethod"] == "OUTBOUND":
        return "outbound", r["Channel"]
    if r["Queue"] is None:
        return "ivr only", r["Channel"]
    if r["DisconnectReason"] == "EXPIRED":
        return "expired", r["Channel"]
    following = {"CALLBACK": "callback request", "QUEUE_TRANSFER": "queue move"}.get(sample.next_method(r))
    return following or ("handled" if _connected(r) else "abandoned"), r["Channel"]


def test_chains_link_each_segment_to_the_one_before(sample):
    """Transfers, moves, callbacks and surveys are segments of one initial contact, linked both ways."""
    later = [r for r in sample.by_id.values() if r["PreviousContactId"] is not None]
    assert {r["InitiationMethod"] for r in later} == {"TRANSFER", "QUEUE_TRANSFER", "CALLBACK", "DISCONNECT"}
    for second in later:
        first = sample.by_id[second["PreviousContactId"]]
        assert first["NextContactId"] == second["ContactId"]
        assert second["InitialContactId"] == first["InitialContactId"]
        assert second["CustomerEndpoint"] == first["CustomerEndpoint"]
        assert ts(first["InitiationTimestamp"]) <= ts(second["InitiationTimestamp"]) <= ts(first["DisconnectTimestamp"])
        if second["InitiationMethod"] == "TRANSFER":
            assert _connected(first) and first["Queue"]["ARN"] != second["Queue"]["ARN"]
            # A transfer inside Connect has no transfer endpoint (that is for transfers out of Connect).
            assert first["TransferCompletedTimestamp"] is None and first["TransferredToEndpoint"] is None
            agent_queue = AGENT_QUEUE.search(second["Queue"]["ARN"])
            if agent_queue:
                assert second["Agent"]["ARN"].endswith(f"/agent/{agent_queue.group(1)}")
        if second["InitiationMethod"] in ("QUEUE_TRANSFER", "CALLBACK"):
            assert _queued(first) and not _connected(first) and first["DisconnectReason"] is None
    assert all(r["NextContactId"] is None or r["NextContactId"] in sample.by_id for r in sample.records)
    monitored = [r for r in sample.by_id.values() if r["InitiationMethod"] == "MONITOR"]
    assert monitored and all(_connected(sample.by_id[r["RelatedContactId"]]) for r in monitored)


def test_updated_copies_have_a_later_last_update_and_change_what_they_say(sample):
    versions: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for _, folder, record in sample.deliveries:
        if all(ENCODE(record) != ENCODE(seen) for _, seen in versions[record["ContactId"]]):
            versions[record["ContactId"]].append((folder, record))
    updated = {contact: v for contact, v in versions.items() if len(v) > 1}
    assert updated
    later_hour = finished_work = 0
    for copies in updated.values():
        for (first_folder, first), (later_folder, later) in zip(copies, copies[1:]):
            assert later_folder >= first_folder
            assert ts(later["LastUpdateTimestamp"]) > ts(first["LastUpdateTimestamp"])
            assert first | {"LastUpdateTimestamp": None} != later | {"LastUpdateTimestamp": None}
            later_hour += later_folder > first_folder
            # A copy sent before the after-contact work ended, then the one with it: the handle time changes.
            finished_work += (first["Agent"] or {}).get("AfterContactWorkDuration", 0) is None \
                and later["Agent"]["AfterContactWorkDuration"] > 0
    assert later_hour and finished_work


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
    plain = [body(key, data) for key, data in sample.objects.items() if not key.endswith(".gz")]
    assert any(not data.isascii() for data in plain)  # written as UTF-8, not \u escapes


def test_some_values_contain_braces_that_naive_splitting_would_break(sample):
    assert any("}{" in value for r in sample.records for value in r["Attributes"].values())


def test_agents_and_queues_are_a_stable_cast(sample):
    agents = {(r["Agent"]["Username"], r["Agent"]["ARN"]) for r in sample.records if r["Agent"]}
    queues = {(r["Queue"]["Name"], r["Queue"]["ARN"]) for r in sample.records if r["Queue"] and r["Queue"]["Name"]}
    assert len(agents) == len({name for name, _ in agents}) == len({arn for _, arn in agents})
    assert len(queues) == len({name for name, _ in queues}) == len({arn for _, arn in queues})
    assert 5 <= len(agents) <= CONTACTS_PER_HOUR // 10 + SUPERVISORS
    assert 3 <= len(queues) <= 6
    (instance,) = {r["InstanceARN"] for r in sample.records}
    assert all(arn.startswith(f"{instance}/agent/") for _, arn in agents)
    assert all(r["Queue"]["ARN"].startswith(f"{instance}/queue/") for r in sample.records if r["Queue"])


def test_endpoints_are_phone_numbers_for_customer_voice_contacts_only(sample):
    for record in sample.records:
        if record["Channel"] == "VOICE" and record["InitiationMethod"] != "MONITOR":
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


def simulate(storage: Path, *arguments: str) -> subprocess.CompletedProcess:
    """The installed `ctr-assets simulate`, as a user runs it."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("CTR_")}
    return subprocess.run([str(CTR_ASSETS), "simulate", "--storage", str(storage), *arguments], capture_output=True,
                          text=True, env=environment, timeout=120)


def raw_files(storage: Path) -> dict[str, bytes]:
    return {path.relative_to(storage).as_posix(): path.read_bytes() for path in (storage / "raw").rglob("*")
            if path.is_file()}


def test_simulate_help_shows_every_default():
    result = subprocess.run([str(CTR_ASSETS), "simulate", "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    for default in ("last HOURS complete hours", "(default: 6)", "(default: 200)", "(default: 0)",
                    "(default: ctr-stream)", "else ./ctr_data"):
        assert default in text, default


def test_simulate_adds_hours_repeats_the_same_range_and_writes_nothing_in_the_future(tmp_path):
    now = datetime.now(timezone.utc)
    if now.minute == 59 and now.second > 30:  # the default range moves on the hour: run after it
        time.sleep(61 - now.second)
        now = datetime.now(timezone.utc)
    last_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    assert simulate(tmp_path, "--hours", "1", "--contacts-per-hour", "20").returncode == 0
    first = raw_files(tmp_path)
    assert simulate(tmp_path, "--hours", "1", "--contacts-per-hour", "20").returncode == 0
    assert raw_files(tmp_path) == first  # the same arguments write the same objects over themselves
    earlier = (last_hour - timedelta(hours=1)).strftime("%Y-%m-%dT%H")
    result = simulate(tmp_path, "--start", earlier, "--hours", "1", "--contacts-per-hour", "20")
    assert result.returncode == 0 and result.stdout.startswith("wrote ")
    both = raw_files(tmp_path)
    assert set(first) < set(both) and all(both[key] == data for key, data in first.items())  # added, none replaced
    arrivals = [datetime(*map(int, KEY.fullmatch(key).groups()[4:10]), tzinfo=timezone.utc) for key in both]
    assert max(arrivals) <= datetime.now(timezone.utc)
    initial = {r["ContactId"] for key, data in first.items() for r in split(body(key, data))
               if r["PreviousContactId"] is None and ts(r["InitiationTimestamp"]) >= last_hour}
    assert initial and not initial & {r["ContactId"] for key, data in both.items() if key not in first
                                      for r in split(body(key, data))}


def test_simulate_refuses_a_start_in_the_future_in_one_line(tmp_path):
    future = (datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H")
    result = simulate(tmp_path, "--start", future)
    assert result.returncode == 2 and not (tmp_path / "raw").exists()
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"ctr-assets: error: --start: {future} is in the future")
