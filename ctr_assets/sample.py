"""Realistic sample contact trace records, written as Firehose-shaped objects (the original `sampledata` option).

Standard library only and deterministic for a seed, so a demo, a test and a benchmark all see the same bytes.
The records follow Amazon Connect's own PascalCase data model, and carry the delivery quirks the pipeline
must survive (design §3): updated re-deliveries hours later, exact duplicates, attribute keys that collide
after normalization, non-ASCII text, and attribute values containing `}{`.

What a pipeline author can rely on (every record):

- Timestamps are `YYYY-MM-DDTHH:MM:SSZ` strings, durations are integer seconds.
- Initiation <= ConnectedToSystem <= Queue.Enqueue <= Queue.Dequeue <= Agent.ConnectedToAgent
  <= Agent.AfterContactWorkStart <= Agent.AfterContactWorkEnd, skipping the ones that are null.
- Disconnect >= Initiation; LastUpdate >= Disconnect and >= AfterContactWorkEnd.
- Queue.Duration = Dequeue - Enqueue; Disconnect - ConnectedToAgent = AgentInteractionDuration +
  CustomerHoldDuration; AfterContactWorkDuration = ACW end - ACW start; LongestHoldDuration <=
  CustomerHoldDuration, both 0 when NumberOfHolds is 0.

What is null for which contact (`Agent`, `Queue`, `Recording`, `Recordings`, `CustomerEndpoint`,
`SystemEndpoint`, `NextContactId`, ... are always present as keys, null when they do not apply):

- IVR-only: `Queue` and `Agent` null.
- Abandoned: `Queue` set with both timestamps, `Agent` null, DisconnectReason CUSTOMER_DISCONNECT.
- Outbound: `Agent` set; `Queue` names the agent's outbound queue but its Enqueue/Dequeue timestamps are
  null and Duration is 0 (count "queued" by `Queue.EnqueueTimestamp`, not by `Queue`).
- Callback: queued; most are connected to an agent, some expire in queue with `Agent` null (not abandoned).
  ConnectedToSystem equals Initiation here, so the ordering above holds for every record (real Connect
  stamps it when the customer answers, which can be after ConnectedToAgent: checks should not rely on it).
- Chat and task: `CustomerEndpoint`, `SystemEndpoint`, `Recording` and `Recordings` null; tasks also carry
  `Name` and `Description`. `Tags` and `SegmentAttributes` appear on some records only.
"""

from __future__ import annotations

import heapq
import json
import random
import time
from bisect import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from itertools import accumulate
from typing import TypeVar

REGION = "us-east-1"
FORMAT_VERSION = "2017-03-10"
INSTANCE_ALIAS = "sample-contact-centre"

# Share of initial contacts per (kind, channel). Transfers add a second segment on top of these.
CONTACT_MIX = (
    ("handled", "VOICE", 0.50),
    ("abandoned", "VOICE", 0.08),
    ("ivr_only", "VOICE", 0.12),
    ("outbound", "VOICE", 0.08),
    ("callback", "VOICE", 0.05),
    ("handled", "CHAT", 0.09),
    ("abandoned", "CHAT", 0.02),
    ("handled", "TASK", 0.06),
)
TRANSFER_RATE = 0.10  # of handled inbound voice contacts: transferred to another queue
HOLD_RATE = 0.30  # of voice contacts connected to an agent
CALLBACK_EXPIRED_RATE = 0.20  # of callbacks: never reach an agent
RECORDING_RATE = 0.90  # of voice contacts connected to an agent
STREAMED_RECORDING_RATE = 0.05  # of recorded contacts: also a Kinesis Video Streams recording
TAGS_RATE = 0.20
SEGMENT_ATTRIBUTES_RATE = 0.30

# Delivery quirks, per delivered segment.
REDELIVERY_RATE = 0.03  # an updated copy (later LastUpdateTimestamp) arrives 1-3 hours later
REDELIVERY_DELAY_SECONDS = (3600, 3 * 3600)
DUPLICATE_RATE = 0.01  # a byte-identical copy arrives within a minute (same or next object)
DUPLICATE_DELAY_SECONDS = 59
DELIVERY_DELAY_SECONDS = (3, 120)  # from LastUpdateTimestamp to arrival
COLLIDING_ATTRIBUTES_RATE = 0.005
UNICODE_VALUE_RATE = 0.02
UNICODE_KEY_RATE = 0.005
BRACES_VALUE_RATE = 0.003  # a value containing "}{", which naive splitting of concatenated JSON breaks

AGENTS_PER_CONTACT_PER_HOUR = 0.10
MIN_AGENTS, MAX_AGENTS = 5, 200
ACCENTED_AGENT_EVERY = 4  # one agent in four has an accented first name
QUEUE_NAMES = ("Sales", "Support", "Billing", "Retention", "Technical Support", "Claims", "Collections")
MIN_QUEUES, MAX_QUEUES = 3, 6
SITES = ("Seattle", "Dublin", "Manila", "Cape Town", "São Paulo")
AGENTS_PER_TEAM = 8

FIRST_NAMES = (
    "alex", "maria", "sam", "priya", "john", "li", "fatima", "noah", "emma", "omar",
    "grace", "lucas", "yuki", "david", "sara", "ahmed", "olivia", "chen", "hannah", "diego",
)  # fmt: skip
ACCENTED_FIRST_NAMES = ("josé", "zoë", "françois", "łukasz", "søren", "inés", "björn", "renée", "chloé", "žofia")
LAST_NAMES = (
    "smith", "garcia", "nguyen", "patel", "kim", "müller", "johnson", "lópez", "brown", "okafor",
    "novak", "silva", "schmidt", "rossi", "dubois", "haddad", "tanaka", "wilson", "ibáñez", "kowalski",
)  # fmt: skip
CUSTOMER_TYPES = ("Standard", "Gold", "Silver", "New")
LANGUAGES = ("en-US", "en-US", "en-US", "es-US", "fr-CA", "de-DE")
INTENTS = ("balance", "opening-hours", "order-status", "password-reset", "store-locator")
CAMPAIGNS = ("renewal-q4", "winback", "survey-followup")
UNICODE_NAMES = ("Zoë Ñúñez", "Björk Guðmundsdóttir", "Łukasz Żółć", "François Lefèvre", "山田 太郎", "Ayşe Yılmaz")
UNICODE_KEYS = ("Ñame", "città")
UNICODE_CITIES = ("città di Castello", "São Paulo", "Kraków", "München", "東京", "Zürich")
BRACES_VALUES = ('{"intent":"refund"}{"intent":"cancel"}', "agent said: }{ twice")
# Pairs of attribute spellings that collide under re.sub(r"\W+", "", key.lower()), with different values.
COLLIDING_ATTRIBUTES = (
    (("customerType", "Gold"), ("Customer-Type", "VIP")),
    (("Region", "EMEA"), ("region", "emea-west")),
    (("callReason", "billing"), ("Call Reason", "Billing dispute")),
)
TASK_NAMES = ("Refund follow-up", "Address change", "Callback request review", "Complaint escalation")
HANDLED_DISCONNECT_REASONS = (
    ("CUSTOMER_DISCONNECT", 0.55),
    ("AGENT_DISCONNECT", 0.42),
    ("TELECOM_PROBLEM", 0.03),
)
IVR_DISCONNECT_REASONS = (
    ("CONTACT_FLOW_DISCONNECT", 0.85),
    ("CUSTOMER_DISCONNECT", 0.12),
    ("TELECOM_PROBLEM", 0.03),
)
MEAN_WAIT_SECONDS = {"VOICE": 45, "CHAT": 60, "TASK": 600, "CALLBACK": 300, "UNANSWERED": 120}  # exponential
TALK_LOG_MEAN = {"VOICE": 5.4, "CHAT": 6.0, "TASK": 5.8}  # lognormal, sigma 0.6: medians ~220 s, 400 s, 330 s
SEGMENT_SUBTYPES = {"VOICE": "connect:Telephony", "CHAT": "connect:Chat", "TASK": "connect:Task"}
MEDIA_STREAMS = {"VOICE": ("AUDIO",), "CHAT": ("CHAT",), "TASK": ()}

T = TypeVar("T")
_Weighted = tuple[Sequence[T], Sequence[float]]  # values and their cumulative weights


class _Random(random.Random):
    """`random.Random` plus the draws made several times per record, without `randint`/`choices` overhead."""

    def between(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))

    def one_of(self, values: Sequence[T]) -> T:
        return values[int(self.random() * len(values))]

    def pick(self, weighted: _Weighted[T]) -> T:
        values, cum_weights = weighted
        return values[bisect(cum_weights, self.random() * cum_weights[-1], 0, len(values) - 1)]


def _weighted(pairs: Iterable[tuple[T, float]]) -> _Weighted[T]:
    """(values, cumulative weights), ready for `_Random.pick`."""
    values, weights = zip(*pairs)
    return values, list(accumulate(weights))


_MIX = _weighted(((kind, channel), share) for kind, channel, share in CONTACT_MIX)
_HANDLED_DISCONNECT_REASONS = _weighted(HANDLED_DISCONNECT_REASONS)
_IVR_DISCONNECT_REASONS = _weighted(IVR_DISCONNECT_REASONS)
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)  # version and variant bits
_UUID4_SET = (4 << 76) | (0x8000 << 48)
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)  # records are trees


@dataclass(frozen=True)
class SampleStats:
    """What `write_firehose_objects` wrote, so a caller can report it and a test can check it."""

    objects: int  # Firehose objects written
    records: int  # CTR JSON records written (including re-deliveries and duplicates)
    contacts: int  # distinct ContactIds


def generate_ctrs(
    start: datetime, hours: int, contacts_per_hour: int, seed: int = 0
) -> Iterator[tuple[datetime, dict]]:
    """Yield (arrival time UTC, CTR dict in Connect's own PascalCase shape), in arrival order.

    `contacts_per_hour` counts initial contacts; a transfer adds a second ContactId. Memory stays bounded by the
    contacts in progress plus pending re-deliveries, whatever `hours` is. Every yielded dict is a fresh object.
    """
    for arrival, _, record, _ in _deliveries(start, hours, contacts_per_hour, seed):
        yield datetime.fromtimestamp(arrival, timezone.utc), record


def write_firehose_objects(
    write: Callable[[str, bytes], None],
    start: datetime,
    hours: int,
    contacts_per_hour: int,
    seed: int = 0,
    stream: str = "ctr-stream",
    batch_seconds: int = 60,
) -> SampleStats:
    """Group records by arrival into Firehose-shaped objects and hand each (key, bytes) to `write`.

    Records arriving in the same `batch_seconds` window (aligned to the epoch) form one object, concatenated
    with no separator as Firehose does by default. The object is named after its LAST record's arrival:
    `raw/YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>`, so when `batch_seconds` divides an hour every
    record in an object arrived within that object's hour folder.
    """
    if batch_seconds < 1:
        raise ValueError(f"batch_seconds must be at least 1, got {batch_seconds}")
    if not stream or "/" in stream:
        raise ValueError(f"stream must be a non-empty name without '/', got {stream!r}")
    key_rng = random.Random(f"firehose-objects/{seed}")
    objects = records = contacts = 0
    window, last_arrival, parts = None, 0, []

    def flush() -> None:
        nonlocal objects
        t = time.gmtime(last_arrival)
        folder = time.strftime("raw/%Y/%m/%d/%H", t)
        name = f"{stream}-1-{time.strftime('%Y-%m-%d-%H-%M-%S', t)}"
        write(f"{folder}/{name}-{_uuid(key_rng)}", "".join(parts).encode("utf-8"))
        objects += 1
        parts.clear()

    for arrival, _, record, first_delivery in _deliveries(start, hours, contacts_per_hour, seed):
        if arrival // batch_seconds != window and parts:
            flush()
        window, last_arrival = arrival // batch_seconds, arrival
        parts.append(_JSON.encode(record))
        records += 1
        contacts += first_delivery
    if parts:
        flush()
    return SampleStats(objects=objects, records=records, contacts=contacts)


def _deliveries(
    start: datetime, hours: int, contacts_per_hour: int, seed: int
) -> Iterator[tuple[int, int, dict, bool]]:
    """(arrival epoch second, sequence, record, first delivery of its ContactId) in arrival order.

    Contacts are generated in initiation order into a heap. Before each contact, everything that arrives before
    its initiation is released: every contact still to come is initiated (so arrives) later. The heap holds only
    contacts still in progress and pending re-deliveries, not an hour of traffic.
    """
    start_s = _epoch_hour(start)
    if hours < 0 or contacts_per_hour < 0:
        raise ValueError(f"hours and contacts_per_hour must be >= 0, got {hours} and {contacts_per_hour}")
    rng = _Random(seed)
    maker = _ContactMaker(rng, _ContactCentre(rng, contacts_per_hour))
    pending: list[tuple[int, int, dict, bool]] = []
    sequence = 0
    for hour in range(hours):
        hour_start = start_s + hour * 3600
        for initiation in sorted(hour_start + rng.between(0, 3599) for _ in range(contacts_per_hour)):
            while pending and pending[0][0] < initiation:
                yield heapq.heappop(pending)
            for arrival, record, first_delivery in maker.contact(initiation):
                heapq.heappush(pending, (arrival, sequence, record, first_delivery))
                sequence += 1
    while pending:
        yield heapq.heappop(pending)


def _epoch_hour(start: datetime) -> int:
    """Epoch seconds of `start` (naive means UTC), which must be on the hour like Firehose's folders."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    if (start.minute, start.second, start.microsecond) != (0, 0, 0):
        raise ValueError(f"start must be truncated to the hour, got {start.isoformat()}")
    return int(start.timestamp())


@lru_cache(maxsize=4096)
def _iso(epoch_second: int) -> str:
    """Connect's timestamp format; cached because contacts in progress share the same few thousand seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_second))


def _uuid(rng: random.Random) -> str:
    """A version-4 UUID from `rng` (uuid.uuid4 would read the OS entropy pool and break determinism)."""
    h = f"{rng.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"  # what uuid.UUID(int=..., version=4) does
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _phone(rng: _Random, prefix: str = "") -> str:
    """An E.164 number: mostly North American, some UK."""
    if not prefix and rng.random() < 0.1:
        return f"+4420{rng.between(10**7, 10**8 - 1)}"
    return f"+1{prefix or rng.between(201, 989)}555{rng.between(0, 9999):04d}"


@dataclass(frozen=True)
class _Queue:
    arn: str
    name: str
    phone: str


@dataclass(frozen=True)
class _Agent:
    arn: str
    username: str
    profile_arn: str
    profile_name: str
    outbound_queue: _Queue
    groups: tuple[tuple[str, str], ...]  # (ARN, GroupName) for Level1..Level3


class _ContactCentre:
    """The stable world one run shares: an instance, its queues, routing profiles, agents and phone numbers."""

    def __init__(self, rng: _Random, contacts_per_hour: int) -> None:
        self.account_id = str(rng.randrange(10**11, 10**12))
        instance_id = _uuid(rng)
        self.instance_arn = f"arn:aws:connect:{REGION}:{self.account_id}:instance/{instance_id}"
        self.recording_bucket = f"amazon-connect-{instance_id[-12:]}"
        self.system_phones = [_phone(rng, "800"), _phone(rng, "888")]
        names = rng.sample(QUEUE_NAMES, rng.between(MIN_QUEUES, MAX_QUEUES))
        self.queues = [_Queue(f"{self.instance_arn}/queue/{_uuid(rng)}", name, _phone(rng, "206")) for name in names]
        # Routing profiles: a basic one serving every queue, and one per queue serving it and its neighbour.
        profiles = [("Basic Routing Profile", tuple(range(len(names))))]
        profiles += [(f"{name} Agents", (i, (i + 1) % len(names))) for i, name in enumerate(names)]
        profile_arns = [f"{self.instance_arn}/routing-profile/{_uuid(rng)}" for _ in profiles]
        sites = rng.sample(SITES, 2)
        group_arns: dict[tuple[str, ...], str] = {}

        def group(*path: str) -> tuple[str, str]:
            if path not in group_arns:
                group_arns[path] = f"{self.instance_arn}/agent-group/{_uuid(rng)}"
            return group_arns[path], path[-1]

        count = min(MAX_AGENTS, max(MIN_AGENTS, round(contacts_per_hour * AGENTS_PER_CONTACT_PER_HOUR)))
        self.agents: list[_Agent] = []
        by_queue: list[list[tuple[_Agent, float]]] = [[] for _ in names]
        usernames: set[str] = set()
        for i in range(count):
            first_names = ACCENTED_FIRST_NAMES if i % ACCENTED_AGENT_EVERY == 1 else FIRST_NAMES
            username = f"{rng.one_of(first_names)}.{rng.one_of(LAST_NAMES)}"
            while username in usernames:
                username += str(rng.randrange(10))
            usernames.add(username)
            p = 0 if i % 5 == 0 else 1 + i % len(names)
            profile_name, served = profiles[p]
            site, department = sites[i % 2], profile_name.removesuffix(" Agents")
            team = f"Team {i // AGENTS_PER_TEAM + 1}"
            agent = _Agent(
                arn=f"{self.instance_arn}/agent/{_uuid(rng)}",
                username=username,
                profile_arn=profile_arns[p],
                profile_name=profile_name,
                outbound_queue=self.queues[served[0]],
                groups=(group(site), group(site, department), group(site, department, team)),
            )
            self.agents.append(agent)
            busyness = rng.uniform(0.5, 1.5)  # some agents take more contacts than others
            for q in served:
                by_queue[q].append((agent, busyness))
        self.agents_by_queue = [_weighted(pairs) for pairs in by_queue]


class _ContactMaker:
    """Builds each contact's segments as Connect would record them, and schedules their deliveries."""

    def __init__(self, rng: _Random, centre: _ContactCentre) -> None:
        self.rng = rng
        self.centre = centre

    def contact(self, initiation: int) -> list[tuple[int, dict, bool]]:
        """Every delivery (arrival, record, first delivery?) of one initial contact and its transfer."""
        rng = self.rng
        kind, channel = rng.pick(_MIX)
        queue = rng.between(0, len(self.centre.queues) - 1)
        if kind == "ivr_only":
            segments = [self._ivr_only(initiation)]
        elif kind == "outbound":
            segments = [self._outbound(initiation)]
        elif kind == "callback":
            answered = rng.random() >= CALLBACK_EXPIRED_RATE
            segments = [self._queued("VOICE", "CALLBACK", initiation, initiation, queue, answered, self._attributes())]
        else:
            method = "INBOUND" if channel == "VOICE" else "API"
            lead = {"VOICE": (8, 90), "CHAT": (5, 60), "TASK": (0, 3)}[channel]  # IVR, bot or flow before the queue
            enqueue = initiation + rng.between(*lead)
            attributes = self._attributes(channel)
            segments = [self._queued(channel, method, initiation, enqueue, queue, kind == "handled", attributes)]
            if kind == "handled" and channel == "VOICE" and rng.random() < TRANSFER_RATE:
                segments.append(self._transfer(segments[0], queue))
        deliveries = []
        for record, last_update in segments:
            deliveries.extend(self._deliver(record, last_update))
        return deliveries

    def _ids(self) -> tuple[str, str]:
        contact_id = _uuid(self.rng)
        return contact_id, contact_id

    def _attributes(self, channel: str = "VOICE") -> dict[str, str]:
        """Contact-flow attributes, with the occasional unicode, colliding spellings or `}{` in a value."""
        rng = self.rng
        if channel == "VOICE":
            attributes = {
                "greetingPlayed": "true",
                "customerType": rng.one_of(CUSTOMER_TYPES),
                "language": rng.one_of(LANGUAGES),
            }
        elif channel == "CHAT":
            attributes = {"customerName": "Guest", "language": rng.one_of(LANGUAGES), "channelSource": "web"}
        else:
            attributes = {"taskSource": "CRM", "priority": str(rng.between(1, 5))}
        if rng.random() < UNICODE_VALUE_RATE:
            attributes["customerName"] = rng.one_of(UNICODE_NAMES)
        if rng.random() < UNICODE_KEY_RATE:
            attributes[rng.one_of(UNICODE_KEYS)] = rng.one_of(UNICODE_CITIES)
        if rng.random() < COLLIDING_ATTRIBUTES_RATE:
            for key, value in rng.one_of(COLLIDING_ATTRIBUTES):
                attributes[key] = value
        if rng.random() < BRACES_VALUE_RATE:
            attributes["botTranscript"] = rng.one_of(BRACES_VALUES)
        return attributes

    def _queued(
        self,
        channel: str,
        method: str,
        initiation: int,
        enqueue: int,
        queue: int,
        answered: bool,
        attributes: dict[str, str],
        ids: tuple[str, str] | None = None,
        previous_id: str | None = None,
        customer: str | None = None,
    ) -> tuple[dict, int]:
        """A contact that waits in `queue`: handled by an agent when `answered`, else it leaves the queue."""
        rng = self.rng
        mean_wait = MEAN_WAIT_SECONDS[method if method == "CALLBACK" else channel if answered else "UNANSWERED"]
        dequeue = enqueue + min(3600, int(rng.expovariate(1 / mean_wait)))
        agent, connected_to_agent, talk, holds, after_contact_work = None, 0, 0, (), 0
        if answered:
            agent = rng.pick(self.centre.agents_by_queue[queue])
            connected_to_agent = dequeue + rng.between(0, 2)
            talk = max(20, min(3600, int(rng.lognormvariate(TALK_LOG_MEAN[channel], 0.6))))
            if channel == "VOICE" and rng.random() < HOLD_RATE:
                holds = tuple(rng.between(5, 180) for _ in range(rng.one_of((1, 1, 1, 2, 2, 3))))
            after_contact_work = rng.between(0, 240)
            reason, attempts = rng.pick(_HANDLED_DISCONNECT_REASONS), 1 + (rng.random() < 0.08)
        else:
            reason = "CONTACT_FLOW_DISCONNECT" if method == "CALLBACK" else "CUSTOMER_DISCONNECT"
            attempts = int(rng.random() < 0.1)
        return self._record(
            ids=ids or self._ids(),
            previous_id=previous_id,
            channel=channel,
            method=method,
            initiation=initiation,
            connected_to_system=initiation,
            attributes=attributes,
            customer=customer or (_phone(rng) if channel == "VOICE" else None),
            queue=(self.centre.queues[queue], enqueue, dequeue),
            disconnect=dequeue,
            agent=agent,
            connected_to_agent=connected_to_agent,
            talk=talk,
            holds=holds,
            after_contact_work=after_contact_work,
            reason=reason,
            attempts=attempts,
        )

    def _ivr_only(self, initiation: int) -> tuple[dict, int]:
        """A caller served (or lost) by the contact flow alone: never queued, no agent."""
        rng = self.rng
        attributes = self._attributes()
        attributes["intent"] = rng.one_of(INTENTS)
        return self._record(
            ids=self._ids(),
            channel="VOICE",
            method="INBOUND",
            initiation=initiation,
            connected_to_system=initiation,
            attributes=attributes,
            customer=_phone(rng),
            disconnect=initiation + rng.between(15, 300),
            reason=rng.pick(_IVR_DISCONNECT_REASONS),
            attempts=0,
        )

    def _outbound(self, initiation: int) -> tuple[dict, int]:
        """An agent dials out: no queue wait, the agent's outbound queue recorded without timestamps."""
        rng = self.rng
        agent = rng.one_of(self.centre.agents)
        answered_at = initiation + rng.between(4, 25)
        return self._record(
            ids=self._ids(),
            channel="VOICE",
            method="OUTBOUND",
            initiation=initiation,
            connected_to_system=answered_at,
            attributes={"campaign": rng.one_of(CAMPAIGNS), "language": rng.one_of(LANGUAGES)},
            customer=_phone(rng),
            system=agent.outbound_queue.phone,
            queue=(agent.outbound_queue, None, None),
            agent=agent,
            connected_to_agent=answered_at,
            talk=max(20, int(rng.lognormvariate(5.0, 0.6))),
            after_contact_work=rng.between(0, 120),
            reason=rng.pick(_HANDLED_DISCONNECT_REASONS),
            attempts=0,
        )

    def _transfer(self, first: tuple[dict, int], from_queue: int) -> tuple[dict, int]:
        """Transfer a handled voice contact to another queue: a new segment chained by contact ids."""
        rng = self.rng
        record, _ = first
        disconnect = _parse(record["DisconnectTimestamp"])
        to_queue = (from_queue + rng.randrange(1, len(self.centre.queues))) % len(self.centre.queues)
        # The agent starts the transfer a few seconds before leaving; it completes when the contact is queued.
        initiation = disconnect - min(rng.between(2, 8), record["Agent"]["AgentInteractionDuration"])
        second = self._queued(
            "VOICE",
            "TRANSFER",
            initiation,
            disconnect,
            to_queue,
            True,
            dict(record["Attributes"]),
            ids=(_uuid(rng), record["InitialContactId"]),
            previous_id=record["ContactId"],
            customer=record["CustomerEndpoint"]["Address"],
        )
        record["NextContactId"] = second[0]["ContactId"]
        record["TransferCompletedTimestamp"] = record["DisconnectTimestamp"]
        record["TransferredToEndpoint"] = {"Address": self.centre.queues[to_queue].phone, "Type": "TELEPHONE_NUMBER"}
        record["DisconnectReason"] = "AGENT_DISCONNECT"
        return second

    def _record(
        self,
        *,
        ids: tuple[str, str],
        channel: str,
        method: str,
        initiation: int,
        connected_to_system: int,
        attributes: dict[str, str],
        customer: str | None,
        reason: str,
        attempts: int,
        previous_id: str | None = None,
        system: str | None = None,
        queue: tuple[_Queue, int | None, int | None] | None = None,
        disconnect: int | None = None,
        agent: _Agent | None = None,
        connected_to_agent: int = 0,
        talk: int = 0,
        holds: tuple[int, ...] = (),
        after_contact_work: int = 0,
    ) -> tuple[dict, int]:
        """One CTR in Connect's key order, with every duration derived from the timestamps it reports."""
        rng, centre = self.rng, self.centre
        agent_info = None
        end_of_work = disconnect
        if agent is not None:
            level1, level2, level3 = agent.groups
            disconnect = connected_to_agent + talk + sum(holds)
            end_of_work = disconnect + after_contact_work
            agent_info = {
                "ARN": agent.arn,
                "AfterContactWorkDuration": after_contact_work,
                "AfterContactWorkEndTimestamp": _iso(end_of_work),
                "AfterContactWorkStartTimestamp": _iso(disconnect),
                "AgentInteractionDuration": talk,
                "ConnectedToAgentTimestamp": _iso(connected_to_agent),
                "CustomerHoldDuration": sum(holds),
                "HierarchyGroups": {
                    "Level1": {"ARN": level1[0], "GroupName": level1[1]},
                    "Level2": {"ARN": level2[0], "GroupName": level2[1]},
                    "Level3": {"ARN": level3[0], "GroupName": level3[1]},
                },
                "LongestHoldDuration": max(holds, default=0),
                "NumberOfHolds": len(holds),
                "RoutingProfile": {"ARN": agent.profile_arn, "Name": agent.profile_name},
                "Username": agent.username,
            }
        last_update = end_of_work + rng.between(0, 5)
        queue_info = None
        if queue is not None:
            q, enqueue, dequeue = queue
            queue_info = {
                "ARN": q.arn,
                "DequeueTimestamp": None if dequeue is None else _iso(dequeue),
                "Duration": 0 if enqueue is None else dequeue - enqueue,
                "EnqueueTimestamp": None if enqueue is None else _iso(enqueue),
                "Name": q.name,
            }
        contact_id, initial_id = ids
        recording = recordings = None
        if channel == "VOICE" and agent is not None and rng.random() < RECORDING_RATE:
            recording, recordings = self._recordings(contact_id, connected_to_agent, disconnect)
        record = {
            "AWSAccountId": centre.account_id,
            "AWSContactTraceRecordFormatVersion": FORMAT_VERSION,
            "Agent": agent_info,
            "AgentConnectionAttempts": attempts,
            "Attributes": attributes,
            "Channel": channel,
            "ConnectedToSystemTimestamp": _iso(connected_to_system),
            "ContactDetails": {},
            "ContactId": contact_id,
            "CustomerEndpoint": customer and {"Address": customer, "Type": "TELEPHONE_NUMBER"},
            "DisconnectReason": reason,
            "DisconnectTimestamp": _iso(disconnect),
            "InitialContactId": initial_id,
            "InitiationMethod": method,
            "InitiationTimestamp": _iso(initiation),
            "InstanceARN": centre.instance_arn,
            "LastUpdateTimestamp": _iso(last_update),
            "MediaStreams": [{"Type": t} for t in MEDIA_STREAMS[channel]],
            "NextContactId": None,
            "PreviousContactId": previous_id,
            "Queue": queue_info,
            "Recording": recording,
            "Recordings": recordings,
            "SystemEndpoint": None,
            "TransferCompletedTimestamp": None,
            "TransferredToEndpoint": None,
        }
        if channel == "VOICE":
            address = system or rng.one_of(centre.system_phones)
            record["SystemEndpoint"] = {"Address": address, "Type": "TELEPHONE_NUMBER"}
        if channel == "TASK":
            record["Name"] = rng.one_of(TASK_NAMES)
            record["Description"] = f"Created from CRM case {rng.randrange(10**5, 10**6)}"
        if rng.random() < TAGS_RATE:
            department = queue_info["Name"] if queue_info else "IVR"
            record["Tags"] = {"Department": department, "CostCenter": f"CC-{rng.between(100, 120)}"}
        if rng.random() < SEGMENT_ATTRIBUTES_RATE:
            record["SegmentAttributes"] = {"connect:Subtype": {"ValueString": SEGMENT_SUBTYPES[channel]}}
        return record, last_update

    def _recordings(self, contact_id: str, start: int, stop: int) -> tuple[dict, list[dict]]:
        """The call recording in S3 (both `Recording` and `Recordings[0]`), sometimes also a live KVS stream."""
        rng = self.rng
        started, stopped = _iso(start), _iso(stop)
        day, minute = started[:10].replace("-", "/"), f"{started[:10].replace('-', '')}T{started[11:16]}"
        folder = f"{self.centre.recording_bucket}/connect/{INSTANCE_ALIAS}/CallRecordings/{day}"
        location = f"{folder}/{contact_id}_{minute}_UTC.wav"
        recording = {"DeletionReason": None, "Location": location, "Status": "AVAILABLE", "Type": "AUDIO"}
        recordings = [
            {
                "DeletionReason": None,
                "FragmentStartNumber": None,
                "FragmentStopNumber": None,
                "Location": location,
                "MediaStreamType": "AUDIO",
                "ParticipantType": None,
                "StartTimestamp": started,
                "Status": "AVAILABLE",
                "StopTimestamp": stopped,
                "StorageType": "S3",
            }
        ]
        if rng.random() < STREAMED_RECORDING_RATE:
            # Fragment numbers are decimal strings far beyond 64-bit integers.
            fragment = rng.randrange(10**46, 10**47)
            recordings.append(
                {
                    "DeletionReason": None,
                    "FragmentStartNumber": str(fragment),
                    "FragmentStopNumber": str(fragment + rng.randrange(10**6, 10**9)),
                    "Location": f"arn:aws:kinesisvideo:{REGION}:{self.centre.account_id}:stream/"
                    f"{INSTANCE_ALIAS}-contact-{contact_id}/{rng.randrange(10**12, 10**13)}",
                    "MediaStreamType": "AUDIO",
                    "ParticipantType": "CUSTOMER",
                    "StartTimestamp": started,
                    "Status": "AVAILABLE",
                    "StopTimestamp": stopped,
                    "StorageType": "KINESIS_VIDEO_STREAM",
                }
            )
        return recording, recordings

    def _deliver(self, record: dict, last_update: int) -> list[tuple[int, dict, bool]]:
        """The record's arrival, plus sometimes an exact duplicate and an updated copy hours later."""
        rng = self.rng
        arrival = last_update + rng.between(*DELIVERY_DELAY_SECONDS)
        deliveries = [(arrival, record, True)]
        if rng.random() < DUPLICATE_RATE:
            deliveries.append((arrival + rng.between(0, DUPLICATE_DELAY_SECONDS), _copy(record), False))
        if rng.random() < REDELIVERY_RATE:
            # At least an hour after the first arrival, so always in a later arrival-hour folder.
            later = arrival + rng.between(*REDELIVERY_DELAY_SECONDS)
            updated = _copy(record)
            updated["LastUpdateTimestamp"] = _iso(later - rng.between(*DELIVERY_DELAY_SECONDS))
            if updated["Recording"] is not None and rng.random() < 0.3:
                for r in (updated["Recording"], *updated["Recordings"]):
                    r["Status"], r["DeletionReason"] = "DELETED", "Customer requested deletion"
            else:
                updated["Attributes"]["postCallSurveyScore"] = str(rng.between(1, 5))
            deliveries.append((later, updated, False))
        return deliveries


def _copy(record: dict) -> dict:
    """A deep copy with the same key order, so the copy serializes to the same bytes."""
    return json.loads(_JSON.encode(record))


def _parse(timestamp: str) -> int:
    return int(datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())
