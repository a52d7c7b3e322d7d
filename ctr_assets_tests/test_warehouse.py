"""The dashboard metrics against numbers worked out by hand from the contacts in hand_built.py.

Those contacts went through the real pipeline (Firehose objects, flatten, dedup, Dagster assets) with a 30 s
service level; each expectation below says which contacts make it up. `test_reference.py` compares every cell
of every table with an independent reference; here each Connect definition is shown on its example contacts.
"""

from contextlib import closing
from datetime import date, datetime, timezone

import dagster as dg
import duckdb
import pytest

from ctr_assets.lake.storage import LocalStorage
from ctr_assets.metrics.warehouse import (
    AGGREGATES,
    build_aggregate,
    markdown_table,
    prepare_metrics,
    refresh_ctr_view,
    scratch_connection,
)
from ctr_assets_tests.hand_built import ARN
from ctr_assets_tests.helpers import local_table

SALES, SALES_EMEA, SUPPORT = f"{ARN}/queue/Sales", f"{ARN}/queue/sales-emea", f"{ARN}/queue/Support"
NINE, TEN = datetime(2026, 3, 2, 9), datetime(2026, 3, 2, 10)
FLAGS = ("is_queued", "is_handled", "is_answered", "is_abandoned", "is_callback", "is_callback_handled",
         "is_queued_for_callback", "is_transferred_in_by_agent", "is_transferred_in_from_queue",
         "is_transferred_out_by_agent", "is_transferred_out_queue", "is_transferred_out_external", "is_put_on_hold",
         "agent_hung_up_first")
ANSWERED = {"is_queued", "is_handled", "is_answered"}


def rows(hand_built, query: str) -> list[dict]:
    with duckdb.connect(hand_built.settings.warehouse_path, read_only=True) as connection:
        relation = connection.sql(query)
        return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def by_key(records: list[dict], *key: str) -> dict[tuple, dict]:
    return {tuple(record[name] for name in key): record for record in records}


def rebuilt(hand_built, tmp_path, name: str, as_of: datetime | None = None, **overrides) -> list[dict]:
    """One aggregate built again from the same table with other settings, written to another folder."""
    storage = LocalStorage(root=str(tmp_path))
    settings = hand_built.settings.model_copy(update=overrides)
    with closing(scratch_connection()) as connection:
        refresh_ctr_view(connection, hand_built.storage, local_table(hand_built.storage))
        prepare_metrics(connection, settings, as_of)
        build_aggregate(connection, storage, name)
        relation = connection.sql(f"SELECT * FROM {name}")
        return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def test_duplicates_and_updated_copies_count_once_with_their_latest_outcome(hand_built):
    # 33 deliveries of 29 contacts: answered-at-x three times, chat and callback twice (stale, then updated).
    assert hand_built.summary.flattened["records_in"] == 33
    assert hand_built.summary.table_rows == 29
    facts = by_key(rows(hand_built, "SELECT * FROM contact_facts WHERE contactid IN ('chat', 'callback')"), "contactid")
    chat, callback = facts[("chat",)], facts[("callback",)]
    assert chat["is_handled"] and not chat["is_abandoned"] and chat["agent_username"] == "dave"
    # The callback's later copy has erin's after-contact work: 150 s talk + 30 s ACW, not 150 s.
    assert (callback["after_contact_work_seconds"], callback["handle_seconds"]) == (30, 180)


def test_each_contact_is_classified_by_connects_definitions(hand_built):
    """The example contacts of each definition (contact_facts.sql quotes the Connect text beside each flag)."""
    expected = {
        "answered-at-x": ANSWERED,
        "answered-late": ANSWERED | {"is_put_on_hold", "agent_hung_up_first"},  # its next segment is a survey
        "survey": set(),  # DISCONNECT segment with no queue
        "abandoned": {"is_queued", "is_abandoned"},
        "ivr-only": set(),  # never queued: not abandoned
        "expired-callback": {"is_queued", "is_callback"},  # queued for callback: not abandoned
        "outbound": {"is_handled"},
        "unanswered-outbound": {"is_handled", "agent_hung_up_first"},  # the agent was connected
        "transfer-1": ANSWERED | {"is_transferred_out_by_agent", "agent_hung_up_first"},
        "transfer-2": ANSWERED | {"is_transferred_in_by_agent", "is_put_on_hold"},
        "callback-request": {"is_queued", "is_queued_for_callback"},  # not abandoned
        "callback": ANSWERED | {"is_callback", "is_callback_handled"},
        "queue-move-1": {"is_queued", "is_transferred_out_queue"},  # not abandoned
        "queue-move-2": {"is_queued", "is_abandoned", "is_transferred_in_from_queue"},
        "agent-transfer-1": ANSWERED | {"is_transferred_out_by_agent", "agent_hung_up_first"},
        "agent-transfer-2": ANSWERED | {"is_transferred_in_by_agent"},
        "external-transfer": ANSWERED | {"is_transferred_out_by_agent", "is_transferred_out_external"},
        "missed": {"is_queued", "is_abandoned"},  # frank was offered it, never connected
        "monitor": set(),  # grace listened in: not handled
        "renamed-old": ANSWERED,
        "renamed-new": ANSWERED,
        "same-name": {"is_queued", "is_abandoned"},
        "task-expired": {"is_queued", "is_abandoned"},
        "task-api": ANSWERED,
        "chat": ANSWERED,
        "chat-no-reason": ANSWERED,
        "last-millisecond": ANSWERED,
        "next-interval": ANSWERED,
        "evening": ANSWERED,
    }
    facts = rows(hand_built, f"SELECT contactid, {', '.join(FLAGS)} FROM contact_facts")
    actual = {fact["contactid"]: {flag for flag in FLAGS if fact[flag]} for fact in facts}
    assert actual == expected


def test_queues_are_grouped_by_arn_and_shown_with_their_current_name(hand_built):
    queues = {row["queue_arn"]: row["queue_name"] for row in rows(hand_built, "SELECT * FROM queues")}
    assert queues == {
        SALES: "Sales", SALES_EMEA: "Sales",  # one name, two queues: two rows
        SUPPORT: "Support", f"{ARN}/queue/Billing": "Billing",
        f"{ARN}/queue/retention": "Customer Retention",  # renamed: the name on its latest contact
        f"{ARN}/queue/agent/dave": "Agent queue: dave",  # an agent's queue has no name: its agent's
    }
    metrics = rows(hand_built, "SELECT queue_arn, queue_name, sum(contacts_queued) AS queued FROM queue_interval_metrics "
                               "GROUP BY ALL")
    assert {(row["queue_arn"], row["queue_name"]): row["queued"] for row in metrics if row["queue_arn"]} == {
        (SALES, "Sales"): 9, (SALES_EMEA, "Sales"): 1, (SUPPORT, "Support"): 10, (f"{ARN}/queue/Billing", "Billing"): 1,
        (f"{ARN}/queue/retention", "Customer Retention"): 2, (f"{ARN}/queue/agent/dave", "Agent queue: dave"): 1}


def test_queue_interval_metrics_follow_connect_definitions(hand_built):
    metrics = by_key(rows(hand_built, "SELECT * FROM queue_interval_metrics"), "queue_arn", "interval_start", "channel")

    sales = metrics[(SALES, NINE, "VOICE")]
    # Contacts whose disconnect time is in 09:00-10:00: answered-at-x, answered-late, abandoned, outbound,
    # unanswered-outbound, transfer-2, queue-move-1, external-transfer, missed, last-millisecond (09:59:59.999);
    # not next-interval (10:00:00.000).
    assert sales["contacts"] == 10
    # Queued: all but the two outbound calls.
    assert (sales["contacts_queued"], sales["contacts_handled"], sales["contacts_answered"]) == (8, 7, 5)
    # Abandoned: abandoned and missed (frank never connected); not queue-move-1, which a flow moved to Billing.
    assert sales["contacts_abandoned"] == 2 and sales["abandonment_rate"] == pytest.approx(2 / 8)
    # Within 30 s: answered-at-x (30 s), transfer-2 (5), external-transfer (12), last-millisecond (19).
    assert sales["contacts_within_service_level"] == 4 and sales["service_level"] == pytest.approx(4 / 8)
    assert sales["service_level_seconds"] == 30
    assert sales["avg_queue_answer_seconds"] == pytest.approx((30 + 31 + 5 + 12 + 19) / 5)
    assert sales["avg_queue_wait_seconds"] == pytest.approx((30 + 31 + 90 + 5 + 50 + 12 + 45 + 19) / 8)
    assert sales["max_queue_wait_seconds"] == 90
    # Handle time = talk + hold + ACW: 360, 290, outbound 130, unanswered 30, transfer-2 100, external 80, 100.
    assert sales["avg_handle_seconds"] == pytest.approx((360 + 290 + 130 + 30 + 100 + 80 + 100) / 7)
    # Hold averaged over the contacts put on hold only: answered-late (60 s) and transfer-2 (30 s).
    assert sales["contacts_put_on_hold"] == 2 and sales["avg_hold_seconds"] == pytest.approx((60 + 30) / 2)
    assert (sales["transfers_in"], sales["transfers_in_by_agent"], sales["transfers_in_from_queue"]) == (1, 1, 0)
    # Out: queue-move-1 (queue to queue), external-transfer (by agent, external).
    assert (sales["transfers_out"], sales["transfers_out_by_agent"], sales["transfers_out_queue"],
            sales["transfers_out_external"]) == (2, 1, 1, 1)
    assert sales["contacts_agent_hung_up_first"] == 2  # answered-late, unanswered-outbound

    support = metrics[(SUPPORT, NINE, "VOICE")]
    # expired-callback, transfer-1, callback-request, callback, agent-transfer-1: none abandoned.
    assert (support["contacts_queued"], support["contacts_handled"], support["contacts_abandoned"]) == (5, 3, 0)
    assert support["service_level"] == pytest.approx(2 / 5)  # transfer-1 (10 s), agent-transfer-1 (8 s)
    assert (support["callback_contacts"], support["callback_contacts_handled"],
            support["contacts_queued_for_callback"]) == (2, 1, 1)
    assert (support["transfers_out"], support["transfers_out_by_agent"]) == (2, 2)

    # The move's second segment was abandoned in Billing: abandoned there, transferred in from queue.
    billing = metrics[(f"{ARN}/queue/Billing", NINE, "VOICE")]
    assert (billing["contacts_abandoned"], billing["transfers_in_from_queue"], billing["abandonment_rate"]) == (1, 1, 1)
    assert metrics[(f"{ARN}/queue/agent/dave", NINE, "VOICE")]["transfers_in_by_agent"] == 1
    task = metrics[(SUPPORT, NINE, "TASK")]  # task-expired (EXPIRED today after a week) and task-api
    assert (task["contacts_queued"], task["contacts_abandoned"], task["max_queue_wait_seconds"]) == (2, 1, 7 * 86400)
    no_queue = metrics[(None, NINE, "VOICE")]  # ivr-only, survey, monitor
    assert (no_queue["queue_name"], no_queue["contacts"], no_queue["contacts_handled"]) == ("(no queue)", 3, 0)
    assert metrics[(SALES, TEN, "VOICE")]["contacts"] == 1  # next-interval, ended at 10:00:00.000
    assert not any(row["is_partial"] for row in metrics.values())  # built long after March 2026


def test_the_enqueue_rule_counts_contacts_when_they_entered_their_queue(hand_built, tmp_path):
    metrics = by_key(rebuilt(hand_built, tmp_path, "queue_interval_metrics", interval_rule="enqueue"),
                     "queue_arn", "interval_start", "channel")
    assert (SALES, TEN, "VOICE") not in metrics  # next-interval was queued at 09:55:30
    assert metrics[(SALES, NINE, "VOICE")]["contacts_queued"] == 9
    # The task that expired today was queued a week ago, when it counts under this rule.
    assert metrics[(SUPPORT, datetime(2026, 2, 23, 9), "TASK")]["contacts_abandoned"] == 1
    assert metrics[(SUPPORT, NINE, "TASK")]["contacts_abandoned"] == 0


def test_intervals_of_15_minutes(hand_built, tmp_path):
    metrics = by_key(rebuilt(hand_built, tmp_path, "queue_interval_metrics", interval_minutes=15),
                     "queue_arn", "interval_start", "channel")
    sales = {key[1]: row for key, row in metrics.items() if key[0] == SALES and key[2] == "VOICE"}
    # 09:00-09:15: answered-at-x, answered-late, abandoned, outbound, transfer-2, queue-move-1; 09:15-09:30:
    # external-transfer, missed, unanswered-outbound; 09:45-10:00: last-millisecond; 10:00: next-interval.
    assert {start.strftime("%H:%M"): row["contacts"] for start, row in sales.items()} == {
        "09:00": 6, "09:15": 3, "09:45": 1, "10:00": 1}
    assert all(row["interval_end"] - row["interval_start"] == NINE.replace(minute=15) - NINE for row in sales.values())


def test_an_interval_not_over_when_the_report_is_made_is_partial(hand_built, tmp_path):
    metrics = rebuilt(hand_built, tmp_path / "intervals", "queue_interval_metrics",
                      as_of=datetime(2026, 3, 2, 10, 30, tzinfo=timezone.utc))
    partial = {row["interval_start"].strftime("%H:%M") for row in metrics if row["is_partial"]}
    assert partial == {"10:00", "23:00"}  # 09:00-10:00 is over at 10:30; 10:00-11:00 is not
    days = rebuilt(hand_built, tmp_path / "days", "daily_summary", as_of=datetime(2026, 3, 3, tzinfo=timezone.utc))
    assert {row["day"]: row["is_partial"] for row in days} == {date(2026, 3, 2): False}


def test_daily_summary_counts_every_contact_including_ivr_only(hand_built):
    days = by_key(rows(hand_built, "SELECT * FROM daily_summary"), "day", "channel")
    assert set(days) == {(date(2026, 3, 2), channel) for channel in ("VOICE", "CHAT", "TASK")}
    voice = days[(date(2026, 3, 2), "VOICE")]
    # 25 voice contacts, the 3 with no queue included; 20 queued (not the two outbound calls and those 3).
    assert (voice["contacts"], voice["contacts_queued"], voice["contacts_handled"]) == (25, 20, 15)
    # Abandoned: abandoned, missed, queue-move-2, same-name.
    assert voice["contacts_abandoned"] == 4 and voice["abandonment_rate"] == pytest.approx(4 / 20)
    assert voice["transfers_in"] == 3 and voice["transfers_out"] == 4
    assert voice["queue_answer_seconds"] == 30 + 31 + 5 + 12 + 19 + 20 + 10 + 100 + 8 + 4 + 5 + 25 + 12


def test_agent_tables_credit_only_the_agents_connected_to_a_contact(hand_built):
    per_agent = {row["agent_username"]: row["contacts"] for row in rows(hand_built, "SELECT * FROM contacts_per_agent")}
    # Not frank (offered `missed`, never connected), not grace (a supervisor monitoring).
    assert per_agent == {"alice": 5, "bob": 5, "dave": 4, "carol": 3, "erin": 1}
    agents = by_key(rows(hand_built, "SELECT * FROM agent_performance"), "agent_username")
    alice = agents[("alice",)]  # answered-at-x, outbound, transfer-2, renamed-old, last-millisecond
    assert (alice["contacts_handled"], alice["contacts_handled_outbound"]) == (5, 1)
    assert alice["avg_handle_seconds"] == pytest.approx((360 + 130 + 100 + 100 + 100) / 5)
    assert alice["avg_hold_seconds"] == 30 and alice["avg_after_contact_work_seconds"] == pytest.approx(90 / 5)
    carol = agents[("carol",)]  # transfer-1, agent-transfer-1, unanswered-outbound
    assert (carol["contacts_handled"], carol["transfers_out"], carol["contacts_agent_hung_up_first"]) == (3, 2, 3)
    assert agents[("erin",)]["callback_contacts_handled"] == 1
    by_queue = rows(hand_built, "SELECT agent_username, queue_name, contacts FROM agent_queue_contacts "
                                "WHERE agent_username = 'dave'")
    assert {row["queue_name"]: row["contacts"] for row in by_queue} == {"Support": 3, "Agent queue: dave": 1}


def test_disconnect_reasons_by_outcome(hand_built):
    reasons = rows(hand_built, "SELECT outcome, disconnect_reason, sum(contacts) AS n FROM disconnect_reasons "
                               "GROUP BY ALL ORDER BY ALL")
    assert [(r["outcome"], r["disconnect_reason"], r["n"]) for r in reasons] == [
        ("abandoned", "CUSTOMER_DISCONNECT", 4),  # abandoned, missed, queue-move-2, same-name
        ("abandoned", "EXPIRED", 1),  # task-expired
        ("callback not connected", "CONTACT_FLOW_DISCONNECT", 1),
        ("callback requested", "(none)", 1),  # Connect left the reason null
        ("handled", "(none)", 1),  # chat-no-reason
        ("handled", "AGENT_DISCONNECT", 4),  # answered-late, transfer-1, agent-transfer-1, unanswered-outbound
        ("handled", "API", 1),  # task-api
        ("handled", "CUSTOMER_DISCONNECT", 11),
        ("handled", "THIRD_PARTY_DISCONNECT", 1),  # external-transfer
        ("moved to another queue", "(none)", 1),  # queue-move-1
        ("not queued", "CONTACT_FLOW_DISCONNECT", 1),  # ivr-only
        ("not queued", "CUSTOMER_DISCONNECT", 2),  # survey, monitor
    ]


def test_service_level_threshold_is_a_setting_and_includes_its_boundary(hand_built, tmp_path):
    def sales_within(seconds: int) -> int:
        (sales,) = [r for r in rebuilt(hand_built, tmp_path / str(seconds), "queue_interval_metrics",
                                       service_level_seconds=seconds)
                    if r["queue_arn"] == SALES and r["channel"] == "VOICE" and r["interval_start"] == NINE]
        return sales["contacts_within_service_level"]

    # Sales waits: transfer-2 5 s, external 12, last-millisecond 19, answered-at-x 30, answered-late 31, missed 45,
    # queue-move-1 50, abandoned 90.
    assert [sales_within(seconds) for seconds in (29, 30, 31, 90)] == [3, 4, 5, 8]


def test_reporting_time_zone_shifts_interval_and_day_buckets(hand_built, tmp_path):
    tokyo = by_key(rebuilt(hand_built, tmp_path / "hours", "queue_interval_metrics", report_timezone="Asia/Tokyo"),
                   "queue_arn", "interval_start", "channel")
    # 09:xx UTC is 18:xx in Tokyo (UTC+9); evening's 23:33 UTC is 08:33 the next day.
    assert tokyo[(SALES, datetime(2026, 3, 2, 18), "VOICE")]["contacts"] == 10
    assert tokyo[(SUPPORT, datetime(2026, 3, 3, 8), "VOICE")]["contacts"] == 1
    days = {(r["day"], r["channel"]): r["contacts"]
            for r in rebuilt(hand_built, tmp_path / "days", "daily_summary", report_timezone="Asia/Tokyo")}
    assert days == {(date(2026, 3, 2), "VOICE"): 24, (date(2026, 3, 2), "CHAT"): 2, (date(2026, 3, 2), "TASK"): 2,
                    (date(2026, 3, 3), "VOICE"): 1}


def test_each_aggregate_is_a_parquet_file_a_table_and_an_asset_with_a_rounded_preview(hand_built):
    for name in AGGREGATES:
        table = rows(hand_built, f"SELECT * FROM {name} ORDER BY ALL")
        parquet = hand_built.storage.uri(f"dashboards/{name}.parquet")
        with duckdb.connect() as connection:
            relation = connection.sql(f"SELECT * FROM read_parquet('{parquet}') ORDER BY ALL")
            assert [dict(zip(relation.columns, row)) for row in relation.fetchall()] == table, name
        event = hand_built.instance.get_latest_materialization_event(dg.AssetKey(name))
        metadata = event.asset_materialization.metadata
        assert metadata["dagster/row_count"].value == len(table)
        assert metadata["preview"].value.startswith("| " + " | ".join(table[0])), name
    preview = hand_built.instance.get_latest_materialization_event(
        dg.AssetKey("queue_interval_metrics")).asset_materialization.metadata["preview"].value
    assert "155.7142857" not in preview and "155.71" in preview  # Sales' average handle time, rounded


def test_previews_round_numbers_and_show_times_to_the_minute():
    preview = markdown_table(["rate", "seconds", "at", "name"],
                             [(2 / 3, 155.714285, datetime(2026, 3, 2, 9, 0, 0, 999000), None), (None, 12, None, "a|b")])
    assert preview.splitlines()[2:] == ["| 0.67 | 155.71 | 2026-03-02 09:00 |  |", "|  | 12 |  | a\\|b |"]
