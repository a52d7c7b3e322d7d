"""A small set of CTRs built by hand, run once through the real pipeline, for the metric and dashboard tests.

Every contact below is there for one rule of the metrics (design section 6); the tests work out the expected
numbers from this list by hand. All contacts start on 2026-03-02 between 09:00 and 09:20 UTC, except
`evening`; the service level threshold is 30 s.
"""

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


def at(minutes: float) -> datetime:
    return HOUR + timedelta(minutes=minutes)


TRANSFERRED_AT = at(10) + timedelta(seconds=10 + 100)  # transfer-1 leaves carol after 10 s in queue, 100 s of talk
CONTACTS = {
    # Sales, voice: answered after exactly the threshold (within the service level), 300 s talk, 60 s ACW.
    "answered-at-x": connect_contact("answered-at-x", at(0), queue="Sales", enqueued=at(1), wait=30, agent="alice",
                                     talk=300, acw=60),
    # Sales, voice: answered one second too late; two holds (40 + 20 s); the agent hung up first.
    "answered-late": connect_contact("answered-late", at(1), queue="Sales", enqueued=at(2), wait=31, agent="bob",
                                     talk=200, holds=(40, 20), acw=30, reason="AGENT_DISCONNECT"),
    # Sales, voice: hung up after 90 s in queue: abandoned.
    "abandoned": connect_contact("abandoned", at(2), queue="Sales", enqueued=at(3), wait=90),
    # No queue, no agent: served by the IVR alone; not queued, so not abandoned.
    "ivr-only": connect_contact("ivr-only", at(3), reason="CONTACT_FLOW_DISCONNECT"),
    # Support, voice: a queued callback that expired after 600 s with no agent: queued, not abandoned.
    "expired-callback": connect_contact("expired-callback", at(4), method="CALLBACK", queue="Support", enqueued=at(5),
                                        wait=600, reason="CONTACT_FLOW_DISCONNECT"),
    # Sales (alice's outbound queue), voice: outbound, the queue has no enqueue timestamp: handled, not queued.
    "outbound": connect_contact("outbound", at(6), method="OUTBOUND", queue="Sales", agent="alice", talk=120, acw=10),
    # Support, voice: carol answers after 10 s and transfers the customer to Sales: transferred out.
    "transfer-1": connect_contact("transfer-1", at(9), queue="Support", enqueued=at(10), wait=10, agent="carol",
                                  talk=100, reason="AGENT_DISCONNECT", NextContactId="transfer-2"),
    # Sales, voice: the transfer's second segment, answered by alice after 5 s, one 30 s hold: transferred in.
    "transfer-2": connect_contact("transfer-2", TRANSFERRED_AT - timedelta(seconds=5), method="TRANSFER",
                                  queue="Sales", enqueued=TRANSFERRED_AT, wait=5, agent="alice", talk=50, holds=(30,),
                                  acw=20, PreviousContactId="transfer-1", InitialContactId="transfer-1"),
    # Support, chat: dave answers after 45 s (outside the service level). Its first copy (below) has no agent.
    "chat": connect_contact("chat", at(19), Channel="CHAT", method="API", queue="Support", enqueued=at(20), wait=45,
                            agent="dave", talk=400, acw=100, updated=HOUR + timedelta(hours=1)),
    # Support, voice, at 23:30 UTC: bob answers after 12 s; the next day in Tokyo.
    "evening": connect_contact("evening", HOUR.replace(hour=23, minute=29), queue="Support",
                               enqueued=HOUR.replace(hour=23, minute=30), wait=12, agent="bob", talk=180, acw=20),
}
# The chat's first delivery, before the update that connected it to dave: on its own it would be abandoned.
STALE_CHAT = connect_contact("chat", at(19), Channel="CHAT", method="API", queue="Support", enqueued=at(20), wait=45)


@dataclass
class HandBuilt:
    settings: CtrSettings
    storage: LocalStorage
    summary: PipelineSummary
    instance: dg.DagsterInstance


@pytest.fixture(scope="session")
def hand_built(tmp_path_factory) -> HandBuilt:
    """The contacts above as Firehose delivers them (an exact duplicate, the updated chat an hour later),
    run through the pipeline with CTR_SERVICE_LEVEL_SECONDS=30 and the default UTC reporting zone."""
    root = tmp_path_factory.mktemp("hand_built")
    settings = settings_for(root, service_level_seconds=SERVICE_LEVEL_SECONDS)
    storage = storage_for(settings)
    first = [CONTACTS[name] for name in ("answered-at-x", "answered-at-x", "answered-late", "abandoned", "ivr-only",
                                         "outbound", "transfer-1", "transfer-2")]
    storage.write(raw_key(HOUR, 900, "a"), firehose_object(*first, STALE_CHAT))
    storage.write(raw_key(HOUR, 1800, "b"), firehose_object(CONTACTS["expired-callback"], CONTACTS["answered-at-x"]))
    storage.write(raw_key(HOUR + timedelta(hours=1), 300, "c"), firehose_object(CONTACTS["chat"]))
    storage.write(raw_key(HOUR.replace(hour=23), 2400, "d"), firehose_object(CONTACTS["evening"]))
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CTR_REPORT_TIMEZONE", "CTR_SERVICE_LEVEL_TARGET", "CTR_DUCKDB_PATH"):
            patch.delenv(name, raising=False)
        patch.setenv("CTR_FIRST_HOUR", settings.first_hour)
        patch.setenv("CTR_SERVICE_LEVEL_SECONDS", str(SERVICE_LEVEL_SECONDS))
        summary = run_pipeline(settings.storage_url, instance=instance)
    assert summary.ok, (summary.failed_checks, summary.failed_runs)
    return HandBuilt(settings, storage, summary, instance)
