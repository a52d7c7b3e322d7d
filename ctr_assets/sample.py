"""Realistic sample contact trace records, written as Firehose-shaped objects (the original `sampledata` option).

Standard library only and deterministic: the contacts initiated in an hour depend only on the seed and that
hour, so the same arguments give the same bytes, another range gives other contacts, and simulating one more
hour adds to what is there instead of rewriting it. The records follow Amazon Connect's own PascalCase data
model with what real instances produce (design §3, issue 14): contact chains linked by NextContactId /
PreviousContactId (transfers to a queue, to an agent's queue, out of Connect; flows moving a contact to another
queue; callbacks with an initial delay, some expired; post-call surveys run by a disconnect flow), supervisors
monitoring calls, unanswered outbound calls, the disconnect reasons Connect documents per channel (null ones
too), millisecond timestamps and the newer top-level fields. They also carry the delivery quirks the pipeline
must survive: copies sent before the agent finished after-contact work and updated later, updated
re-deliveries hours later, exact duplicates, some gzip objects, attribute keys that collide after
normalization, non-ASCII text, and attribute values containing `}{`.

What a pipeline author can rely on (every record):

- Timestamps are `YYYY-MM-DDTHH:MM:SSZ` strings, or `YYYY-MM-DDTHH:MM:SS.mmmZ` with the same milliseconds for
  every timestamp of one contact chain (so durations stay whole seconds); durations are integer seconds.
- Initiation <= Queue.Enqueue <= Queue.Dequeue <= Agent.ConnectedToAgent <= Agent.AfterContactWorkStart
  <= Agent.AfterContactWorkEnd, skipping the ones that are null; Initiation <= ConnectedToSystem <= Disconnect
  when set (a callback or outbound customer answers after the agent is connected; an unanswered call never).
- Disconnect >= Initiation; LastUpdate >= Disconnect and >= AfterContactWorkEnd.
- Queue.Duration = Dequeue - Enqueue; AfterContactWorkDuration = ACW end - ACW start; LongestHoldDuration <=
  CustomerHoldDuration, both 0 when NumberOfHolds is 0. ConnectedToAgent + AgentInteractionDuration +
  CustomerHoldDuration is when the agent left: the disconnect, or for a transfer out of Connect the
  TransferCompletedTimestamp (the customer then stays on with the third party until the disconnect).
- A first copy sent before after-contact work ended has AfterContactWorkEndTimestamp and
  AfterContactWorkDuration null; its updated copy (later LastUpdateTimestamp) has them.

What is null for which contact (`Agent`, `Queue`, `Recording`, `Recordings`, `CustomerEndpoint`,
`SystemEndpoint`, `NextContactId`, ... are always present as keys, null when they do not apply):

- IVR-only, post-call survey (DISCONNECT): `Queue` and `Agent` null.
- Abandoned: `Queue` set with both timestamps, no agent connected; some name the agent who was offered the
  contact and missed it (`Agent` with a null ConnectedToAgentTimestamp). DisconnectReason CUSTOMER_DISCONNECT.
- Left the queue for a callback or another queue: no agent, a null DisconnectReason, NextContactId set.
- Outbound: `Agent` set; `Queue` names the agent's outbound queue but its Enqueue/Dequeue timestamps are
  null and Duration is 0 (count "queued" by `Queue.EnqueueTimestamp`, not by `Queue`).
- Transfer to an agent: the second segment waits in that agent's own queue (`…/queue/agent/<agent id>`),
  whose `Name` is null. Transfers inside Connect have no TransferCompletedTimestamp or TransferredToEndpoint.
- MONITOR: a supervisor's `Agent`, no `Queue`; RelatedContactId names the monitored contact.
- Chat and task: `CustomerEndpoint`, `SystemEndpoint`, `Recording` and `Recordings` null; tasks also carry
  `Name` and `Description`. `Tags`, `SegmentAttributes`, `ContactLens`, `DisconnectDetails` and `Campaign`
  appear on some records only.
"""

from __future__ import annotations

import gzip
import hashlib
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

# Share of initial contacts per (kind, channel); chains add segments on top (transfers, callbacks, moves to
# another queue, surveys, monitoring).
CONTACT_MIX = (
    ("handled", "VOICE", 0.525),
    ("abandoned", "VOICE", 0.035),
    ("callback request", "VOICE", 0.04),
    ("queue move", "VOICE", 0.03),
    ("ivr only", "VOICE", 0.12),
    ("outbound", "VOICE", 0.08),
    ("handled", "CHAT", 0.105),
    ("abandoned", "CHAT", 0.01),
    ("handled", "TASK", 0.05),
    ("expired", "TASK", 0.005),  # created a week ago, never picked up: it expires now
)
TRANSFER_RATE = 0.10  # of handled inbound voice contacts: an agent transfers the customer
TRANSFER_KINDS = (("queue", 0.6), ("agent", 0.25), ("external", 0.15))
SURVEY_RATE = 0.06  # of handled voice contacts not transferred: the disconnect flow plays a survey
MONITOR_RATE = 0.02  # of handled voice contacts: a supervisor listens in
MISSED_BY_AGENT_RATE = 0.15  # of abandoned voice contacts: offered to an agent who missed it first
CALLBACK_EXPIRED_RATE = 0.15  # of callbacks: never reach an agent
QUEUE_MOVE_ABANDONED_RATE = 0.25  # of contacts moved to another queue: abandoned there
UNANSWERED_OUTBOUND_RATE = 0.20
HOLD_RATE = 0.30  # of voice contacts connected to an agent
RECORDING_RATE = 0.90  # of voice contacts connected to an agent
STREAMED_RECORDING_RATE = 0.05  # of recorded contacts: also a Kinesis Video Streams recording
MILLISECOND_RATE = 0.70  # of contact chains: timestamps with milliseconds, as newer records have
TAGS_RATE = 0.20
SEGMENT_ATTRIBUTES_RATE = 0.30
CONTACT_LENS_RATE = 0.40  # of handled voice and chat contacts
DISCONNECT_DETAILS_RATE = 0.05  # of voice contacts connected to an agent
CAMPAIGN_RATE = 0.30  # of outbound calls
TASK_EXPIRY_SECONDS = 7 * 24 * 3600  # Connect expires a task not completed within 7 days

# Delivery quirks, per delivered segment.
ACW_UPDATE_RATE = 0.25  # of contacts with after-contact work: first sent before it ended, updated when it did
REDELIVERY_RATE = 0.03  # an updated copy (later LastUpdateTimestamp) arrives 1-3 hours later
REDELIVERY_DELAY_SECONDS = (3600, 3 * 3600)
DUPLICATE_RATE = 0.01  # a byte-identical copy arrives within a minute (same or next object)
DUPLICATE_DELAY_SECONDS = 59
DELIVERY_DELAY_SECONDS = (3, 120)  # from LastUpdateTimestamp to arrival
GZIP_SHARE = 0.10  # of Firehose objects: GZIP-compressed, named .gz
COLLIDING_ATTRIBUTES_RATE = 0.005
UNICODE_VALUE_RATE = 0.02
UNICODE_KEY_RATE = 0.005
BRACES_VALUE_RATE = 0.003  # a value containing "}{", which naive splitting of concatenated JSON breaks

AGENTS_PER_CONTACT_PER_HOUR = 0.10
MIN_AGENTS, MAX_AGENTS = 5, 200
SUPERVISORS = 2
ACCENTED_AGENT_EVERY = 4  # one agent in four has an accented first name
QUEUE_NAMES = ("Sales", "Support", "Billing", "Retention", "Technical Support", "Claims", "Collections")
MIN_QUEUES, MAX_QUEUES = 3, 6
# How long each queue keeps callers waiting, relative to the mean waits below: most queues are staffed near
# the service level target, the last one of the centre is short of agents.
QUEUE_WAIT_FACTORS = (0.8, 1.0, 1.1, 0.9, 1.2, 1.0)
UNDERSTAFFED_WAIT_FACTOR = 2.5
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
# Disconnect reasons Connect documents per channel ("Contact records data model"); None is the null Connect
# sends "for many contacts, such as contacts ended by flows or APIs".
HANDLED_DISCONNECT_REASONS = {
    "VOICE": (("CUSTOMER_DISCONNECT", 0.55), ("AGENT_DISCONNECT", 0.40), ("TELECOM_PROBLEM", 0.03), ("OTHER", 0.02)),
    "CHAT": (("CUSTOMER_DISCONNECT", 0.50), ("AGENT_DISCONNECT", 0.40), ("OTHER", 0.03), (None, 0.07)),
    "TASK": (("AGENT_DISCONNECT", 0.70), ("API", 0.15), ("CONTACT_FLOW_DISCONNECT", 0.10), ("OTHER", 0.05)),
}
IVR_DISCONNECT_REASONS = (
    ("CONTACT_FLOW_DISCONNECT", 0.80),
    ("CUSTOMER_DISCONNECT", 0.12),
    ("TELECOM_PROBLEM", 0.03),
    (None, 0.05),
)
SURVEY_DISCONNECT_REASONS = (("CUSTOMER_DISCONNECT", 0.6), ("CONTACT_FLOW_DISCONNECT", 0.4))
EXPIRED_CALLBACK_REASONS = (("CONTACT_FLOW_DISCONNECT", 0.5), (None, 0.5))
UNANSWERED_OUTBOUND_REASONS = (("AGENT_DISCONNECT", 0.8), ("TELECOM_PROBLEM", 0.2))
POTENTIAL_DISCONNECT_ISSUES = ("AGENT_CONNECTIVITY_ISSUE", "AGENT_NETWORK_ISSUE", "CUSTOMER_CONNECTIVITY_ISSUE")
# Mean seconds in queue (exponential, times the queue's wait factor): answered ones, and the ones that end
# otherwise (the customer hangs up, asks for a callback, or a flow moves them on).
MEAN_WAIT_SECONDS = {"VOICE": 4, "CHAT": 8, "TASK": 45, "CALLBACK": 90, "UNANSWERED": 60}
CALLBACK_INITIAL_DELAY_SECONDS = (60, 600)  # the Transfer to queue block's "Initial delay"
CALLBACK_EXPIRY_SECONDS = (1800, 3600)  # how long an unanswered callback stays queued
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
_TRANSFER_KINDS = _weighted(TRANSFER_KINDS)
_HANDLED_DISCONNECT_REASONS = {channel: _weighted(pairs) for channel, pairs in HANDLED_DISCONNECT_REASONS.items()}
_IVR_DISCONNECT_REASONS = _weighted(IVR_DISCONNECT_REASONS)
_SURVEY_DISCONNECT_REASONS = _weighted(SURVEY_DISCONNECT_REASONS)
_EXPIRED_CALLBACK_REASONS = _weighted(EXPIRED_CALLBACK_REASONS)
_UNANSWERED_OUTBOUND_REASONS = _weighted(UNANSWERED_OUTBOUND_REASONS)
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)  # version and variant bits
_UUID4_SET = (4 << 76) | (0x8000 << 48)
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)  # records are trees


@dataclass(frozen=True)
class SampleStats:
    """What `write_firehose_objects` wrote, so a caller can report it and a test can check it."""

    objects: int  # Firehose objects written
    records: int  # CTR JSON records written (including updated copies and duplicates)
    contacts: int  # distinct ContactIds
    held_back: int = 0  # records that would arrive after `until`, not written


def generate_ctrs(
    start: datetime, hours: int, contacts_per_hour: int, seed: int = 0, until: datetime | None = None
) -> Iterator[tuple[datetime, dict]]:
    """Yield (arrival time UTC, CTR dict in Connect's own PascalCase shape), in arrival order, up to `until`.

    `contacts_per_hour` counts initial contacts; chains add segments with their own ContactIds. Memory stays
    bounded by the contacts in progress plus pending re-deliveries, whatever `hours` is. Every yielded dict is
    a fresh object.
    """
    for arrival, _, record, _ in _Deliveries(start, hours, contacts_per_hour, seed, until):
        yield datetime.fromtimestamp(arrival, timezone.utc), record


def write_firehose_objects(
    write: Callable[[str, bytes], None],
    start: datetime,
    hours: int,
    contacts_per_hour: int,
    seed: int = 0,
    stream: str = "ctr-stream",
    batch_seconds: int = 60,
    until: datetime | None = None,
) -> SampleStats:
    """Group records by arrival into Firehose-shaped objects and hand each (key, bytes) to `write`.

    Records arriving in the same `batch_seconds` window (aligned to the epoch) form one object, concatenated
    with no separator as Firehose does by default. The object is named after its LAST record's arrival:
    `raw/YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>[.gz]`, so when `batch_seconds` divides an hour
    every record in an object arrived within that object's hour folder. The uuid is derived from the object's
    bytes: writing the same object again replaces it with itself, another object never replaces it. Records
    that would arrive after `until` are held back (counted, not written), so no object is in the future.
    """
    if batch_seconds < 1:
        raise ValueError(f"batch_seconds must be at least 1, got {batch_seconds}")
    if not stream or "/" in stream:
        raise ValueError(f"stream must be a non-empty name without '/', got {stream!r}")
    objects = records = contacts = 0
    window, last_arrival, parts = None, 0, []

    def flush() -> None:
        nonlocal objects
        data = "".join(parts).encode("utf-8")
        digest = hashlib.sha256(f"{stream}/{seed}/".encode() + data).digest()
        t = time.gmtime(last_arrival)
        name = f"{stream}-1-{time.strftime('%Y-%m-%d-%H-%M-%S', t)}-{_uuid(int.from_bytes(digest[:16], 'big'))}"
        compressed = digest[16] < 256 * GZIP_SHARE
        key = f"{time.strftime('raw/%Y/%m/%d/%H', t)}/{name}{'.gz' if compressed else ''}"
        write(key, gzip.compress(data, compresslevel=6, mtime=0) if compressed else data)
        objects += 1
        parts.clear()

    deliveries = _Deliveries(start, hours, contacts_per_hour, seed, until)
    for arrival, _, record, first_delivery in deliveries:
        if arrival // batch_seconds != window and parts:
            flush()
        window, last_arrival = arrival // batch_seconds, arrival
        parts.append(_JSON.encode(record))
        records += 1
        contacts += first_delivery
    if parts:
        flush()
    return SampleStats(objects=objects, records=records, contacts=contacts, held_back=deliveries.held_back)


class _Deliveries:
    """(arrival epoch second, order, record, first delivery of its ContactId) in arrival order, up to `until`.

    Contacts are generated hour by hour in initiation order into a heap. Before each contact, everything that
    arrives before its initiation is released: every contact still to come is initiated (so arrives) later. The
    heap holds only contacts still in progress and pending re-deliveries, not an hour of traffic. Each hour has
    its own random stream (seed and hour), and `order` ranks deliveries of the same second by hour, then by
    generation, so an hour's records do not depend on the range it was generated in.
    """

    def __init__(self, start: datetime, hours: int, contacts_per_hour: int, seed: int, until: datetime | None):
        if hours < 0 or contacts_per_hour < 0:
            raise ValueError(f"hours and contacts_per_hour must be >= 0, got {hours} and {contacts_per_hour}")
        self.start_s, self.hours, self.contacts_per_hour, self.seed = _epoch_hour(start), hours, contacts_per_hour, seed
        self.until_s = None if until is None else until.timestamp()
        self.held_back = 0

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int], dict, bool]]:
        centre = _ContactCentre(_Random(f"{self.seed}/centre"), self.contacts_per_hour)
        pending: list[tuple[int, tuple[int, int], dict, bool]] = []
        for hour in range(self.hours):
            hour_start = self.start_s + hour * 3600
            rng = _Random(f"{self.seed}/{hour_start}")
            maker, order = _ContactMaker(rng, centre), 0
            for initiation in sorted(hour_start + rng.between(0, 3599) for _ in range(self.contacts_per_hour)):
                while pending and pending[0][0] < initiation:
                    yield from self._released(heapq.heappop(pending))
                for arrival, record, first_delivery in maker.contact(initiation):
                    heapq.heappush(pending, (arrival, (hour_start, order), record, first_delivery))
                    order += 1
        while pending:
            yield from self._released(heapq.heappop(pending))

    def _released(self, delivery: tuple) -> Iterator[tuple]:
        if self.until_s is not None and delivery[0] > self.until_s:
            self.held_back += 1
        else:
            yield delivery


def _epoch_hour(start: datetime) -> int:
    """Epoch seconds of `start` (naive means UTC), which must be on the hour like Firehose's folders."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    if (start.minute, start.second, start.microsecond) != (0, 0, 0):
        raise ValueError(f"start must be truncated to the hour, got {start.isoformat()}")
    return int(start.timestamp())


@lru_cache(maxsize=4096)
def _iso(epoch_second: int, milliseconds: int | None = None) -> str:
    """Connect's timestamp format, with milliseconds when given; cached because contacts in progress share the
    same few thousand seconds."""
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_second))
    return f"{text}Z" if milliseconds is None else f"{text}.{milliseconds:03d}Z"


def _uuid(bits: int) -> str:
    """A version-4 UUID from 128 random bits (uuid.uuid4 would read the OS entropy pool and break determinism)."""
    h = f"{bits & _UUID4_CLEAR | _UUID4_SET:032x}"  # what uuid.UUID(int=..., version=4) does
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _phone(rng: _Random, prefix: str = "") -> str:
    """An E.164 number: mostly North American, some UK."""
    if not prefix and rng.random() < 0.1:
        return f"+4420{rng.between(10**7, 10**8 - 1)}"
    return f"+1{prefix or rng.between(201, 989)}555{rng.between(0, 9999):04d}"


@dataclass(frozen=True)
class _Queue:
    arn: str
    name: str | None  # an agent's own queue has no name
    phone: str | None
    wait_factor: float = 1.0


@dataclass(frozen=True)
class _Agent:
    arn: str
    username: str
    profile_arn: str
    profile_name: str
    outbound_queue: _Queue
    groups: tuple[tuple[str, str], ...]  # (ARN, GroupName) for Level1..Level3

    @property
    def own_queue(self) -> _Queue:
        """Where transfers to this agent wait: `…/queue/agent/<agent id>`, with no name."""
        instance, agent_id = self.arn.split("/agent/")
        return _Queue(f"{instance}/queue/agent/{agent_id}", None, None)


@dataclass
class _Segment:
    """One contact record built, with the times later segments of its chain start from."""

    record: dict
    last_update: int
    disconnect: int


class _ContactCentre:
    """The stable world one run shares: an instance, its queues, routing profiles, agents and phone numbers."""

    def __init__(self, rng: _Random, contacts_per_hour: int) -> None:
        self.account_id = str(rng.randrange(10**11, 10**12))
        instance_id = _uuid(rng.getrandbits(128))
        self.instance_arn = f"arn:aws:connect:{REGION}:{self.account_id}:instance/{instance_id}"
        self.recording_bucket = f"amazon-connect-{instance_id[-12:]}"
        self.system_phones = [_phone(rng, "800"), _phone(rng, "888")]
        names = rng.sample(QUEUE_NAMES, rng.between(MIN_QUEUES, MAX_QUEUES))
        factors = [*QUEUE_WAIT_FACTORS[: len(names) - 1], UNDERSTAFFED_WAIT_FACTOR]
        self.queues = [_Queue(f"{self.instance_arn}/queue/{_uuid(rng.getrandbits(128))}", name, _phone(rng, "206"),
                              factor) for name, factor in zip(names, factors)]
        # Routing profiles: a basic one serving every queue, and one per queue serving it and its neighbour.
        profiles = [("Basic Routing Profile", tuple(range(len(names))))]
        profiles += [(f"{name} Agents", (i, (i + 1) % len(names))) for i, name in enumerate(names)]
        profile_arns = [f"{self.instance_arn}/routing-profile/{_uuid(rng.getrandbits(128))}" for _ in profiles]
        sites = rng.sample(SITES, 2)
        group_arns: dict[tuple[str, ...], str] = {}

        def group(*path: str) -> tuple[str, str]:
            if path not in group_arns:
                group_arns[path] = f"{self.instance_arn}/agent-group/{_uuid(rng.getrandbits(128))}"
            return group_arns[path], path[-1]

        def user(username: str, p: int, site: str, department: str, team: str) -> _Agent:
            return _Agent(
                arn=f"{self.instance_arn}/agent/{_uuid(rng.getrandbits(128))}",
                username=username,
                profile_arn=profile_arns[p],
                profile_name=profiles[p][0],
                outbound_queue=self.queues[profiles[p][1][0]],
                groups=(group(site), group(site, department), group(site, department, team)),
            )

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
            agent = user(username, p, sites[i % 2], profiles[p][0].removesuffix(" Agents"),
                         f"Team {i // AGENTS_PER_TEAM + 1}")
            self.agents.append(agent)
            busyness = rng.uniform(0.5, 1.5)  # some agents take more contacts than others
            for q in profiles[p][1]:
                by_queue[q].append((agent, busyness))
        self.agents_by_queue = {queue.arn: _weighted(pairs) for queue, pairs in zip(self.queues, by_queue)}
        self.supervisors = [user(f"supervisor.{rng.one_of(LAST_NAMES)}{n}", 0, sites[n % 2], "Supervisors",
                                 "Supervisors") for n in range(SUPERVISORS)]


class _ContactMaker:
    """Builds each contact's segments as Connect would record them, and schedules their deliveries."""

    def __init__(self, rng: _Random, centre: _ContactCentre) -> None:
        self.rng = rng
        self.centre = centre
        self.milliseconds: int | None = None  # of the chain being built

    def contact(self, initiation: int) -> list[tuple[int, dict, bool]]:
        """Every delivery (arrival, record, first delivery?) of one initial contact and its chain."""
        rng = self.rng
        kind, channel = rng.pick(_MIX)
        self.milliseconds = rng.between(0, 999) if rng.random() < MILLISECOND_RATE else None
        queue = rng.one_of(self.centre.queues)
        if kind == "ivr only":
            segments = [self._ivr_only(initiation)]
        elif kind == "outbound":
            segments = [self._outbound(initiation)]
        elif kind == "expired":
            created = initiation - TASK_EXPIRY_SECONDS
            segments = [self._queued(channel, "API", created, created + rng.between(0, 3), queue, "expired")]
        else:
            method = "INBOUND" if channel == "VOICE" else "API"
            lead = {"VOICE": (8, 90), "CHAT": (5, 60), "TASK": (0, 3)}[channel]  # IVR, bot or flow before the queue
            outcome = {"handled": "answered", "abandoned": "abandoned", "callback request": "callback",
                       "queue move": "moved"}[kind]
            segments = [self._queued(channel, method, initiation, initiation + rng.between(*lead), queue, outcome)]
            if kind == "callback request":
                segments.append(self._callback(segments[0], queue))
            elif kind == "queue move":
                segments.append(self._moved(segments[0], queue))
        if segments[-1].record["Agent"] and segments[-1].record["Agent"]["ConnectedToAgentTimestamp"]:
            segments += self._after_agent(segments[-1])
        deliveries = []
        for segment in segments:
            deliveries.extend(self._deliver(segment))
        return deliveries

    def _stamp(self, epoch_second: int | None) -> str | None:
        return None if epoch_second is None else _iso(epoch_second, self.milliseconds)

    def _ids(self, initial_id: str | None = None) -> tuple[str, str]:
        contact_id = _uuid(self.rng.getrandbits(128))
        return contact_id, initial_id or contact_id

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

    def _wait(self, kind: str, queue: _Queue) -> int:
        return min(3600, int(self.rng.expovariate(1 / (MEAN_WAIT_SECONDS[kind] * queue.wait_factor))))

    def _queued(
        self,
        channel: str,
        method: str,
        initiation: int,
        enqueue: int,
        queue: _Queue,
        outcome: str,
        previous: _Segment | None = None,
        agent: _Agent | None = None,
    ) -> _Segment:
        """A contact that waits in `queue` and then is `answered` (by `agent`, else one serving the queue),
        `abandoned`, leaves for a `callback`, is `moved` to another queue by a flow, or `expired` there."""
        rng = self.rng
        connected_to_agent, talk, holds, after_contact_work, missed_by = None, 0, (), 0, None
        if outcome == "answered":
            dequeue = enqueue + self._wait("CALLBACK" if method == "CALLBACK" else channel, queue)
            agent = agent or rng.pick(self.centre.agents_by_queue[queue.arn])
            connected_to_agent = dequeue + rng.between(0, 2)
            talk = max(20, min(3600, int(rng.lognormvariate(TALK_LOG_MEAN[channel], 0.6))))
            if channel == "VOICE" and rng.random() < HOLD_RATE:
                holds = tuple(rng.between(5, 180) for _ in range(rng.one_of((1, 1, 1, 2, 2, 3))))
            after_contact_work = rng.between(0, 240)
            reason, attempts = rng.pick(_HANDLED_DISCONNECT_REASONS[channel]), 1 + (rng.random() < 0.08)
        elif outcome == "expired":
            dequeue = initiation + (TASK_EXPIRY_SECONDS if channel == "TASK" else rng.between(*CALLBACK_EXPIRY_SECONDS))
            reason = "EXPIRED" if channel == "TASK" else rng.pick(_EXPIRED_CALLBACK_REASONS)
            attempts = int(rng.random() < 0.1)
        else:
            dequeue = enqueue + self._wait("UNANSWERED", queue)
            missed = outcome == "abandoned" and channel == "VOICE" and rng.random() < MISSED_BY_AGENT_RATE
            missed_by = rng.pick(self.centre.agents_by_queue[queue.arn]) if missed else None
            reason = "CUSTOMER_DISCONNECT" if outcome == "abandoned" else None  # a flow ended the others
            attempts = int(missed_by is not None or rng.random() < 0.1)
        return self._record(
            ids=self._ids(previous and previous.record["InitialContactId"]),
            previous_id=previous and previous.record["ContactId"],
            channel=channel,
            method=method,
            initiation=initiation,
            connected_to_system=initiation if method != "CALLBACK" else None,
            attributes=dict(previous.record["Attributes"]) if previous else self._attributes(channel),
            customer=(previous.record["CustomerEndpoint"]["Address"] if previous else _phone(rng))
            if channel == "VOICE" else None,
            queue=(queue, enqueue, dequeue),
            disconnect=dequeue,
            agent=agent if connected_to_agent is not None else missed_by,
            connected_to_agent=connected_to_agent,
            talk=talk,
            holds=holds,
            after_contact_work=after_contact_work,
            reason=reason,
            attempts=attempts,
        )

    def _callback(self, request: _Segment, queue: _Queue) -> _Segment:
        """The callback the customer asked for when leaving the queue: created then, queued after the initial
        delay; an agent takes it and dials the customer (who answers a few seconds later), or it expires."""
        rng = self.rng
        created = request.disconnect
        enqueue = created + rng.between(*CALLBACK_INITIAL_DELAY_SECONDS)
        outcome = "expired" if rng.random() < CALLBACK_EXPIRED_RATE else "answered"
        callback = self._queued("VOICE", "CALLBACK", created, enqueue, queue, outcome, previous=request)
        agent = callback.record["Agent"]
        if agent and agent["ConnectedToAgentTimestamp"]:
            callback.record["ConnectedToSystemTimestamp"] = self._stamp(
                _epoch(agent["ConnectedToAgentTimestamp"]) + rng.between(3, 15))
        request.record["NextContactId"] = callback.record["ContactId"]
        return callback

    def _moved(self, first: _Segment, queue: _Queue) -> _Segment:
        """A flow moves the waiting contact to another queue (QUEUE_TRANSFER), where it is answered or abandoned."""
        rng = self.rng
        others = [q for q in self.centre.queues if q is not queue]
        outcome = "abandoned" if rng.random() < QUEUE_MOVE_ABANDONED_RATE else "answered"
        second = self._queued("VOICE", "QUEUE_TRANSFER", first.disconnect, first.disconnect, rng.one_of(others),
                              outcome, previous=first)
        first.record["NextContactId"] = second.record["ContactId"]
        return second

    def _after_agent(self, handled: _Segment) -> list[_Segment]:
        """What may follow a voice contact an agent handled: a transfer or a survey, and a supervisor listening in."""
        rng, record = self.rng, handled.record
        if record["Channel"] != "VOICE" or record["InitiationMethod"] == "OUTBOUND":
            return []
        segments = [self._monitor(handled)] if rng.random() < MONITOR_RATE else []
        if rng.random() < TRANSFER_RATE:
            kind = rng.pick(_TRANSFER_KINDS)
            if kind == "external":
                self._transfer_out_of_connect(handled)
            else:
                segments.append(self._transfer(handled, record["Queue"]["ARN"], kind))
        elif rng.random() < SURVEY_RATE:
            segments.append(self._survey(handled))
        return segments

    def _transfer(self, first: _Segment, from_queue: str, kind: str) -> _Segment:
        """An agent transfers the customer with a quick connect, to another queue or to another agent's own
        queue: a new TRANSFER segment chained by contact ids (no transfer endpoint: it stays in Connect)."""
        rng, record = self.rng, first.record
        if kind == "agent":
            colleague = rng.one_of([agent for agent in self.centre.agents if agent.username != record["Agent"]["Username"]]
                                   or self.centre.agents)
            to_queue, agent = colleague.own_queue, colleague
        else:
            to_queue, agent = rng.one_of([q for q in self.centre.queues if q.arn != from_queue]), None
        # The agent starts the transfer a few seconds before leaving; it is queued when the agent leaves.
        initiation = first.disconnect - min(rng.between(2, 8), record["Agent"]["AgentInteractionDuration"])
        second = self._queued("VOICE", "TRANSFER", initiation, first.disconnect, to_queue, "answered", previous=first,
                              agent=agent)
        record["NextContactId"] = second.record["ContactId"]
        record["DisconnectReason"] = "AGENT_DISCONNECT"
        return second

    def _transfer_out_of_connect(self, handled: _Segment) -> None:
        """The agent transfers the customer to an outside number and leaves; the customer stays on the line with
        the third party, so the contact ends later, usually when the third party hangs up."""
        rng, record = self.rng, handled.record
        left = handled.disconnect
        handled.disconnect = left + rng.between(30, 900)
        record["TransferCompletedTimestamp"] = self._stamp(left)
        record["TransferredToEndpoint"] = {"Address": _phone(rng), "Type": "TELEPHONE_NUMBER"}
        record["DisconnectTimestamp"] = self._stamp(handled.disconnect)
        record["DisconnectReason"] = "THIRD_PARTY_DISCONNECT" if rng.random() < 0.7 else "CUSTOMER_DISCONNECT"
        handled.last_update = max(handled.last_update, handled.disconnect + rng.between(0, 5))
        record["LastUpdateTimestamp"] = self._stamp(handled.last_update)

    def _survey(self, handled: _Segment) -> _Segment:
        """The agent hangs up and the disconnect flow plays a short survey: a DISCONNECT segment, no queue."""
        rng, record = self.rng, handled.record
        survey = self._record(
            ids=self._ids(record["InitialContactId"]),
            previous_id=record["ContactId"],
            channel="VOICE",
            method="DISCONNECT",
            initiation=handled.disconnect,
            connected_to_system=handled.disconnect,
            attributes=dict(record["Attributes"]) | {"surveyOffered": "true"},
            customer=record["CustomerEndpoint"]["Address"],
            disconnect=handled.disconnect + rng.between(20, 90),
            reason=rng.pick(_SURVEY_DISCONNECT_REASONS),
            attempts=0,
        )
        record["NextContactId"] = survey.record["ContactId"]
        record["DisconnectReason"] = "AGENT_DISCONNECT"
        return survey

    def _monitor(self, handled: _Segment) -> _Segment:
        """A supervisor listens in for part of the call: a MONITOR segment with the supervisor as its agent."""
        rng, record = self.rng, handled.record
        connected = _epoch(record["Agent"]["ConnectedToAgentTimestamp"])
        joined = connected + rng.between(0, max(0, (handled.disconnect - connected) // 2))
        monitor = self._record(
            ids=self._ids(),
            channel="VOICE",
            method="MONITOR",
            initiation=joined,
            connected_to_system=joined,
            attributes={},
            customer=None,
            agent=rng.one_of(self.centre.supervisors),
            connected_to_agent=joined,
            talk=max(1, handled.disconnect - joined),
            reason=record["DisconnectReason"],
            attempts=0,
        )
        monitor.record["RelatedContactId"] = record["ContactId"]
        monitor.record["Agent"]["StateTransitions"] = [
            {"State": "SILENT_MONITOR", "StateStartTimestamp": self._stamp(joined),
             "StateEndTimestamp": self._stamp(monitor.disconnect)}]
        return monitor

    def _ivr_only(self, initiation: int) -> _Segment:
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

    def _outbound(self, initiation: int) -> _Segment:
        """An agent dials out: connected to the contact at once, the customer answers a few seconds later (or not
        at all); no queue wait, the agent's outbound queue recorded without timestamps."""
        rng = self.rng
        agent = rng.one_of(self.centre.agents)
        connected = initiation + rng.between(0, 2)
        answered = rng.random() >= UNANSWERED_OUTBOUND_RATE
        segment = self._record(
            ids=self._ids(),
            channel="VOICE",
            method="OUTBOUND",
            initiation=initiation,
            connected_to_system=connected + rng.between(4, 25) if answered else None,
            attributes={"campaign": rng.one_of(CAMPAIGNS), "language": rng.one_of(LANGUAGES)},
            customer=_phone(rng),
            system=agent.outbound_queue.phone,
            queue=(agent.outbound_queue, None, None),
            agent=agent,
            connected_to_agent=connected,
            talk=max(30, int(rng.lognormvariate(5.0, 0.6))) if answered else rng.between(15, 45),
            after_contact_work=rng.between(0, 120) if answered else rng.between(0, 10),
            reason=rng.pick(_HANDLED_DISCONNECT_REASONS["VOICE"] if answered else _UNANSWERED_OUTBOUND_REASONS),
            attempts=0,
        )
        if rng.random() < CAMPAIGN_RATE:
            segment.record["Campaign"] = {"CampaignId": _uuid(rng.getrandbits(128))}
        return segment

    def _record(
        self,
        *,
        ids: tuple[str, str],
        channel: str,
        method: str,
        initiation: int,
        connected_to_system: int | None,
        attributes: dict[str, str],
        customer: str | None,
        reason: str | None,
        attempts: int,
        previous_id: str | None = None,
        system: str | None = None,
        queue: tuple[_Queue, int | None, int | None] | None = None,
        disconnect: int | None = None,
        agent: _Agent | None = None,
        connected_to_agent: int | None = None,
        talk: int = 0,
        holds: tuple[int, ...] = (),
        after_contact_work: int = 0,
    ) -> _Segment:
        """One CTR in Connect's key order, with every duration derived from the timestamps it reports. An `agent`
        without `connected_to_agent` is one the contact was offered to and never reached."""
        rng, centre = self.rng, self.centre
        agent_info = None
        end_of_work = disconnect
        if agent is not None and connected_to_agent is not None:
            disconnect = connected_to_agent + talk + sum(holds)
            end_of_work = disconnect + after_contact_work
            agent_info = self._agent(agent, connected_to_agent, disconnect, talk, holds, after_contact_work)
        elif agent is not None:
            agent_info = self._agent(agent, None, None, 0, (), 0)
        last_update = end_of_work + rng.between(0, 5)
        queue_info = None
        if queue is not None:
            q, enqueue, dequeue = queue
            queue_info = {
                "ARN": q.arn,
                "DequeueTimestamp": self._stamp(dequeue),
                "Duration": 0 if enqueue is None else dequeue - enqueue,
                "EnqueueTimestamp": self._stamp(enqueue),
                "Name": q.name,
            }
        contact_id, initial_id = ids
        recording = recordings = None
        if channel == "VOICE" and agent_info and connected_to_agent is not None and method != "MONITOR" \
                and rng.random() < RECORDING_RATE:
            recording, recordings = self._recordings(contact_id, connected_to_agent, disconnect)
        record = {
            "AWSAccountId": centre.account_id,
            "AWSContactTraceRecordFormatVersion": FORMAT_VERSION,
            "Agent": agent_info,
            "AgentConnectionAttempts": attempts,
            "Attributes": attributes,
            "Channel": channel,
            "ConnectedToSystemTimestamp": self._stamp(connected_to_system),
            "ContactDetails": {},
            "ContactId": contact_id,
            "CustomerEndpoint": customer and {"Address": customer, "Type": "TELEPHONE_NUMBER"},
            "DisconnectReason": reason,
            "DisconnectTimestamp": self._stamp(disconnect),
            "InitialContactId": initial_id,
            "InitiationMethod": method,
            "InitiationTimestamp": self._stamp(initiation),
            "InstanceARN": centre.instance_arn,
            "LastUpdateTimestamp": self._stamp(last_update),
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
        if channel == "VOICE" and method != "MONITOR":
            address = system or rng.one_of(centre.system_phones)
            record["SystemEndpoint"] = {"Address": address, "Type": "TELEPHONE_NUMBER"}
        if channel == "TASK":
            record["Name"] = rng.one_of(TASK_NAMES)
            record["Description"] = f"Created from CRM case {rng.randrange(10**5, 10**6)}"
        self._newer_fields(record, channel, connected_to_agent is not None and method != "MONITOR")
        return _Segment(record, last_update, disconnect)

    def _agent(self, agent: _Agent, connected: int | None, left: int | None, talk: int, holds: tuple[int, ...],
               after_contact_work: int) -> dict:
        level1, level2, level3 = agent.groups
        return {
            "ARN": agent.arn,
            "AfterContactWorkDuration": after_contact_work,
            "AfterContactWorkEndTimestamp": self._stamp(None if left is None else left + after_contact_work),
            "AfterContactWorkStartTimestamp": self._stamp(left),
            "AgentInteractionDuration": talk,
            "ConnectedToAgentTimestamp": self._stamp(connected),
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

    def _newer_fields(self, record: dict, channel: str, with_agent: bool) -> None:
        """The top-level fields newer instances send on some records: Tags, SegmentAttributes, ContactLens,
        DisconnectDetails (Campaign is added to outbound calls)."""
        rng = self.rng
        if rng.random() < TAGS_RATE:
            department = record["Queue"]["Name"] if record["Queue"] and record["Queue"]["Name"] else "IVR"
            record["Tags"] = {"Department": department, "CostCenter": f"CC-{rng.between(100, 120)}"}
        if rng.random() < SEGMENT_ATTRIBUTES_RATE:
            record["SegmentAttributes"] = {"connect:Subtype": {"ValueString": SEGMENT_SUBTYPES[channel]}}
        if with_agent and channel in ("VOICE", "CHAT") and rng.random() < CONTACT_LENS_RATE:
            record["ContactLens"] = {"ConversationalAnalytics": {"Configuration": {
                "Enabled": True,
                "ChannelConfiguration": {"AnalyticsModes": ["PostContact" if channel == "VOICE" else "ContactLens"]},
                "LanguageLocale": "en-US",
                "RedactionConfiguration": {"Behavior": "Enable", "Policy": "RedactedAndOriginal",
                                           "Entities": ["CREDIT_DEBIT_NUMBER", "BANK_ACCOUNT_NUMBER"],
                                           "MaskMode": "PII"},
                "SentimentConfiguration": {"Behavior": "Enable"},
            }}}
        if with_agent and channel == "VOICE" and rng.random() < DISCONNECT_DETAILS_RATE:
            record["DisconnectDetails"] = {"PotentialDisconnectIssue": rng.one_of(POTENTIAL_DISCONNECT_ISSUES)}

    def _recordings(self, contact_id: str, start: int, stop: int) -> tuple[dict, list[dict]]:
        """The call recording in S3 (both `Recording` and `Recordings[0]`), sometimes also a live KVS stream."""
        rng = self.rng
        started, stopped = self._stamp(start), self._stamp(stop)
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

    def _deliver(self, segment: _Segment) -> list[tuple[int, dict, bool]]:
        """The record's arrival; before it, sometimes a copy sent while the agent was still in after-contact
        work; after it, sometimes an exact duplicate and an updated copy hours later."""
        rng, record = self.rng, segment.record
        arrival = segment.last_update + rng.between(*DELIVERY_DELAY_SECONDS)
        deliveries = [(arrival, record, True)]
        agent = record["Agent"]
        work_end = agent and agent["AfterContactWorkEndTimestamp"]
        working = work_end and _epoch(work_end) > segment.disconnect
        if working and rng.random() < ACW_UPDATE_RATE:
            # Sent when the contact disconnected, before the agent's after-contact work ended (so with an earlier
            # LastUpdateTimestamp), and it arrives before the copy sent when the work ended.
            early = _copy(record)
            early["Agent"]["AfterContactWorkEndTimestamp"] = early["Agent"]["AfterContactWorkDuration"] = None
            early["LastUpdateTimestamp"] = self._stamp(segment.disconnect)
            sent = min(segment.disconnect + rng.between(*DELIVERY_DELAY_SECONDS), arrival - 1)
            deliveries = [(sent, early, True), (arrival, record, False)]
        if rng.random() < DUPLICATE_RATE:
            deliveries.append((arrival + rng.between(0, DUPLICATE_DELAY_SECONDS), _copy(record), False))
        if rng.random() < REDELIVERY_RATE:
            # At least an hour after the first arrival, so always in a later arrival-hour folder.
            later = arrival + rng.between(*REDELIVERY_DELAY_SECONDS)
            updated = _copy(record)
            updated["LastUpdateTimestamp"] = self._stamp(later - rng.between(*DELIVERY_DELAY_SECONDS))
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


def _epoch(timestamp: str) -> int:
    """The whole second of one of our own timestamps (its milliseconds are the chain's, added back on output)."""
    return int(datetime.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
