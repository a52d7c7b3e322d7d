"""A small set of CTRs built by hand, run once through the real pipeline, for the metric and dashboard tests.

Every contact below is there for one rule of the metrics (design section 6, issue 14); the tests work out the
expected numbers from this list by hand, and `reference.py` recomputes every table from the raw objects. All
contacts are on 2026-03-02 between 09:00 and 10:00 UTC, except `evening` (23:30) and the task that expired
after a week in its queue; the service level threshold is 30 s.
"""

import gzip
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from ctr_assets.api import PipelineSummary, run_pipeline
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.settings import CtrSettings
from ctr_assets_tests.helpers import (
    connect_contact,
    firehose_object,
    raw_key,
    settings_for,
)

HOUR = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
SERVICE_LEVEL_SECONDS = 30
ARN = "arn:aws:connect:us-east-1:111122223333:instance/test"
# Every metric setting the fixture pins, so that a developer's own CTR_* variables do not leak in.
METRIC_VARIABLES = ("CTR_REPORT_TIMEZONE", "CTR_SERVICE_LEVEL_TARGET", "CTR_DUCKDB_PATH", "CTR_INTERVAL_MINUTES",
                    "CTR_INTERVAL_RULE", "CTR_ABANDONMENT_RATE_LIMIT", "CTR_ALERT_MIN_QUEUED")


def at(minutes: float) -> datetime:
    return HOUR + timedelta(minutes=minutes)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def in_queue(record: dict, arn: str, name: str | None) -> dict:
    """The record in the queue with this ARN and name (connect_contact derives both from one name)."""
    record["Queue"].update(ARN=arn, Name=name)
    return record


def with_milliseconds(record: dict, milliseconds: int) -> dict:
    """Every timestamp of the record `milliseconds` later, as newer Connect records write them; durations,
    whole seconds, stay exact."""
    def shift(value):
        if isinstance(value, dict):
            return {key: shift(item) if not key.endswith("Timestamp") or not item
                    else f"{item[:-1]}.{milliseconds:03d}Z" for key, item in value.items()}
        return value
    return shift(record)


def callback_contact(**changes) -> dict:
    """The callback that callback-request asked for: created when the customer left the queue (09:12:40), put
    in the queue after a 120 s initial delay, answered by erin 100 s later."""
    record = connect_contact("callback", at(12) + timedelta(seconds=40), method="CALLBACK", queue="Support",
                             enqueued=at(14) + timedelta(seconds=40), wait=100, agent="erin", talk=150, acw=30,
                             PreviousContactId="callback-request", InitialContactId="callback-request")
    record["Agent"].update(changes)
    return record


TRANSFERRED_AT = at(10) + timedelta(seconds=10 + 100)  # transfer-1 leaves carol after 10 s in queue, 100 s of talk
AGENT_TRANSFERRED_AT = at(16) + timedelta(seconds=8 + 60)  # agent-transfer-1: 8 s in queue, 60 s with carol
CONTACTS = {
    # Sales, voice: answered after exactly the threshold (within the service level), 300 s talk, 60 s ACW.
    "answered-at-x": connect_contact("answered-at-x", at(0), queue="Sales", enqueued=at(1), wait=30, agent="alice",
                                     talk=300, acw=60),
    # Sales, voice: answered one second too late; two holds (40 + 20 s); the agent hung up first, and the
    # disconnect flow then played a survey: a DISCONNECT next segment, not a transfer.
    "answered-late": connect_contact("answered-late", at(1), queue="Sales", enqueued=at(2), wait=31, agent="bob",
                                     talk=200, holds=(40, 20), acw=30, reason="AGENT_DISCONNECT",
                                     NextContactId="survey"),
    # No queue: the post-call survey run by answered-late's disconnect flow.
    "survey": connect_contact("survey", at(2) + timedelta(seconds=31 + 260), method="DISCONNECT",
                              PreviousContactId="answered-late", InitialContactId="answered-late"),
    # Sales, voice: hung up after 90 s in queue: abandoned.
    "abandoned": connect_contact("abandoned", at(2), queue="Sales", enqueued=at(3), wait=90),
    # No queue, no agent: served by the IVR alone; not queued, so not abandoned.
    "ivr-only": connect_contact("ivr-only", at(3), reason="CONTACT_FLOW_DISCONNECT"),
    # Support, voice: a queued callback that expired after 600 s with no agent: queued, not abandoned.
    "expired-callback": connect_contact("expired-callback", at(4), method="CALLBACK", queue="Support", enqueued=at(5),
                                        wait=600, reason="CONTACT_FLOW_DISCONNECT"),
    # Sales (alice's outbound queue), voice: outbound, the queue has no enqueue timestamp: handled, not queued.
    "outbound": connect_contact("outbound", at(6), method="OUTBOUND", queue="Sales", agent="alice", talk=120, acw=10),
    # Sales, voice: carol dialled, nobody answered (no ConnectedToSystemTimestamp); she hung up after 30 s.
    # Connect counts it handled: the agent was connected to the contact.
    "unanswered-outbound": connect_contact("unanswered-outbound", at(28), method="OUTBOUND", queue="Sales",
                                           agent="carol", talk=30, reason="AGENT_DISCONNECT"),
    # Support, voice: carol answers after 10 s and transfers the customer to Sales: transferred out by agent.
    "transfer-1": connect_contact("transfer-1", at(9), queue="Support", enqueued=at(10), wait=10, agent="carol",
                                  talk=100, reason="AGENT_DISCONNECT", NextContactId="transfer-2"),
    # Sales, voice: the transfer's second segment, answered by alice after 5 s, one 30 s hold: transferred in.
    "transfer-2": connect_contact("transfer-2", TRANSFERRED_AT - timedelta(seconds=5), method="TRANSFER",
                                  queue="Sales", enqueued=TRANSFERRED_AT, wait=5, agent="alice", talk=50, holds=(30,),
                                  acw=20, PreviousContactId="transfer-1", InitialContactId="transfer-1"),
    # Support, voice: waited 40 s (outside the service level), then asked to be called back: the flow ended it
    # (no DisconnectReason) and created `callback`. Queued for callback, not abandoned.
    "callback-request": connect_contact("callback-request", at(11), queue="Support", enqueued=at(12), wait=40,
                                        reason=None, NextContactId="callback"),
    # Support, voice: the callback, answered by erin: a callback contact handled. Its first copy (below) came
    # before erin finished her after-contact work.
    "callback": callback_contact(),
    # Sales, voice: after 50 s a flow moved it to Billing: transferred out queue, not abandoned.
    "queue-move-1": connect_contact("queue-move-1", at(13), queue="Sales", enqueued=at(14), wait=50, reason=None,
                                    NextContactId="queue-move-2"),
    # Billing, voice: the move's second segment; the customer hung up after 70 s there: transferred in from
    # queue, and abandoned in Billing.
    "queue-move-2": connect_contact("queue-move-2", at(14) + timedelta(seconds=50), method="QUEUE_TRANSFER",
                                    queue="Billing", enqueued=at(14) + timedelta(seconds=50), wait=70,
                                    PreviousContactId="queue-move-1", InitialContactId="queue-move-1"),
    # Support, voice: carol answers after 8 s and transfers the customer to dave with a quick connect.
    "agent-transfer-1": connect_contact("agent-transfer-1", at(15), queue="Support", enqueued=at(16), wait=8,
                                        agent="carol", talk=60, reason="AGENT_DISCONNECT",
                                        NextContactId="agent-transfer-2"),
    # dave's personal queue (no name), voice: the second segment, answered by dave after 4 s.
    "agent-transfer-2": in_queue(
        connect_contact("agent-transfer-2", AGENT_TRANSFERRED_AT - timedelta(seconds=5), method="TRANSFER",
                        queue="dave", enqueued=AGENT_TRANSFERRED_AT, wait=4, agent="dave", talk=90, acw=15,
                        PreviousContactId="agent-transfer-1", InitialContactId="agent-transfer-1"),
        f"{ARN}/queue/agent/dave", None),
    # Sales, voice: bob answers after 12 s and transfers the customer to an outside number (no next segment;
    # TransferCompletedTimestamp set): transferred out by agent, and external.
    "external-transfer": connect_contact("external-transfer", at(17), queue="Sales", enqueued=at(18), wait=12,
                                         agent="bob", talk=80, reason="THIRD_PARTY_DISCONNECT",
                                         TransferCompletedTimestamp=stamp(at(18) + timedelta(seconds=12 + 75)),
                                         TransferredToEndpoint={"Address": "+15550001111", "Type": "TELEPHONE_NUMBER"}),
    # Sales, voice: offered to frank, who missed it; the customer hung up after 45 s. Abandoned, and not frank's.
    "missed": connect_contact("missed", at(20), queue="Sales", enqueued=at(21), wait=45) | {
        "Agent": {"ARN": f"{ARN}/agent/frank", "Username": "frank", "ConnectedToAgentTimestamp": None,
                  "AgentInteractionDuration": 0, "CustomerHoldDuration": 0, "NumberOfHolds": 0,
                  "AfterContactWorkDuration": 0}},
    # No queue: grace, a supervisor, listening in on a contact for 200 s: not handled again.
    "monitor": connect_contact("monitor", at(22), method="MONITOR", agent="grace", talk=200),
    # The Retention queue (one ARN) under its old name, then its new one: one queue, shown as the new name.
    "renamed-old": in_queue(connect_contact("renamed-old", at(23), queue="Retention", enqueued=at(24), wait=5,
                                            agent="alice", talk=100), f"{ARN}/queue/retention", "Retention"),
    "renamed-new": in_queue(connect_contact("renamed-new", at(40), queue="Retention", enqueued=at(41), wait=25,
                                            agent="bob", talk=100), f"{ARN}/queue/retention", "Customer Retention"),
    # A second queue also named "Sales" (another ARN): abandoned after 10 s, in its own row.
    "same-name": in_queue(connect_contact("same-name", at(25), queue="Sales", enqueued=at(26), wait=10),
                          f"{ARN}/queue/sales-emea", "Sales"),
    # Support, task: created a week earlier, never picked up, EXPIRED at 09:30 today: abandoned (removed from
    # the queue, not answered). It counts today by its disconnect time, a week ago by its enqueue time.
    "task-expired": connect_contact("task-expired", at(30) - timedelta(days=7), Channel="TASK", method="API",
                                    queue="Support", enqueued=at(30) - timedelta(days=7), wait=7 * 86400,
                                    reason="EXPIRED"),
    # Support, task: dave picks it up after 60 s; the StopContact API ended it (reason API).
    "task-api": connect_contact("task-api", at(27), Channel="TASK", method="API", queue="Support",
                                enqueued=at(27) + timedelta(seconds=2), wait=60, agent="dave", talk=240, reason="API"),
    # Support, chat: dave answers after 45 s (outside the service level). Its first copy (below) has no agent.
    "chat": connect_contact("chat", at(19), Channel="CHAT", method="API", queue="Support", enqueued=at(20), wait=45,
                            agent="dave", talk=400, acw=100, updated=HOUR + timedelta(hours=1)),
    # Support, chat: answered by dave after 20 s; Connect gave no disconnect reason.
    "chat-no-reason": connect_contact("chat-no-reason", at(29), Channel="CHAT", method="API", queue="Support",
                                      enqueued=at(29) + timedelta(seconds=3), wait=20, agent="dave", talk=300, acw=10,
                                      reason=None),
    # Sales, voice, millisecond timestamps: ends at 09:59:59.999, so it counts in the 09:00 interval.
    "last-millisecond": with_milliseconds(connect_contact("last-millisecond", at(57.5), queue="Sales",
                                                          enqueued=at(58), wait=19, agent="alice", talk=100), 999),
    # Sales, voice, millisecond timestamps: queued at 09:55:30, ends at 10:00:00.000: the 10:00 interval by its
    # disconnect time, 09:00 by its enqueue time.
    "next-interval": with_milliseconds(connect_contact("next-interval", at(55), queue="Sales", enqueued=at(55.5),
                                                       wait=20, agent="bob", talk=250), 0),
    # Support, voice, at 23:30 UTC: bob answers after 12 s; the next day in Tokyo.
    "evening": connect_contact("evening", HOUR.replace(hour=23, minute=29), queue="Support",
                               enqueued=HOUR.replace(hour=23, minute=30), wait=12, agent="bob", talk=180, acw=20),
}
# The chat's first delivery, before the update that connected it to dave: on its own it would be abandoned.
STALE_CHAT = connect_contact("chat", at(19), Channel="CHAT", method="API", queue="Support", enqueued=at(20), wait=45)
# The callback's first delivery, before erin finished her after-contact work: handle time 150 s instead of 180 s.
STALE_CALLBACK = callback_contact(AfterContactWorkEndTimestamp=None, AfterContactWorkDuration=None)
STALE_CALLBACK["LastUpdateTimestamp"] = STALE_CALLBACK["DisconnectTimestamp"]


def raw_objects() -> dict[str, bytes]:
    """The contacts as Firehose delivers them: an exact duplicate (answered-at-x, twice in one object and once
    more later), stale copies first (chat, callback), one gzip object, and an object in the evening."""
    first = ["answered-at-x", "answered-at-x", "answered-late", "abandoned", "ivr-only", "outbound", "transfer-1",
             "transfer-2", "survey", "callback-request", "queue-move-1", "queue-move-2"]
    second = ["expired-callback", "answered-at-x", "agent-transfer-1", "agent-transfer-2", "external-transfer",
              "missed", "monitor"]
    third = ["chat", "callback", "renamed-old", "renamed-new", "same-name", "task-expired", "task-api",
             "unanswered-outbound", "chat-no-reason", "last-millisecond", "next-interval"]
    return {
        raw_key(HOUR, 900, "a"): firehose_object(*[CONTACTS[name] for name in first], STALE_CHAT, STALE_CALLBACK),
        raw_key(HOUR, 1800, "b"): firehose_object(*[CONTACTS[name] for name in second]),
        raw_key(HOUR + timedelta(hours=1), 300, "c") + ".gz": gzip.compress(
            firehose_object(*[CONTACTS[name] for name in third]), mtime=0),
        raw_key(HOUR.replace(hour=23), 2400, "d"): firehose_object(CONTACTS["evening"]),
    }


@dataclass
class HandBuilt:
    settings: CtrSettings
    storage: LocalStorage
    summary: PipelineSummary
    instance: dg.DagsterInstance


@pytest.fixture(scope="session")
def hand_built(tmp_path_factory) -> HandBuilt:
    """The contacts above as Firehose delivers them, run through the pipeline with CTR_SERVICE_LEVEL_SECONDS=30
    and every other metric setting at its default (UTC, hours, Connect's disconnect-time rule)."""
    root = tmp_path_factory.mktemp("hand_built")
    settings = settings_for(root, service_level_seconds=SERVICE_LEVEL_SECONDS)
    storage = storage_for(settings)
    for key, data in raw_objects().items():
        storage.write(key, data)
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as patch:
        for name in METRIC_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("CTR_FIRST_HOUR", settings.first_hour)
        patch.setenv("CTR_SERVICE_LEVEL_SECONDS", str(SERVICE_LEVEL_SECONDS))
        summary = run_pipeline(settings.storage_url, instance=instance)
    assert summary.ok, (summary.failed_checks, summary.failed_runs)
    return HandBuilt(settings, storage, summary, instance)
