"""The dashboard metrics against numbers worked out by hand from the contacts in hand_built.py.

Those contacts went through the real pipeline (Firehose objects, flatten, dedup, Dagster assets) with a 30 s
service level; each expectation below says which contacts make it up.
"""

from contextlib import closing
from datetime import date, datetime

import dagster as dg
import duckdb
import pytest

from ctr_assets.lake.storage import LocalStorage
from ctr_assets.metrics.warehouse import (
    AGGREGATES,
    build_aggregate,
    metric_parameters,
    refresh_ctr_view,
    scratch_connection,
)
from ctr_assets_tests.helpers import local_table


def rows(hand_built, query: str) -> list[dict]:
    with duckdb.connect(hand_built.settings.warehouse_path, read_only=True) as connection:
        relation = connection.sql(query)
        return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def by_key(records: list[dict], *key: str) -> dict[tuple, dict]:
    return {tuple(record[name] for name in key): record for record in records}


def rebuilt(hand_built, tmp_path, name: str, **overrides) -> list[dict]:
    """One aggregate built again from the same table with other settings, written to another folder."""
    storage = LocalStorage(root=str(tmp_path))
    settings = hand_built.settings.model_copy(update=overrides)
    with closing(scratch_connection()) as connection:
        refresh_ctr_view(connection, hand_built.storage, local_table(hand_built.storage))
        build_aggregate(connection, storage, name, metric_parameters(settings))
        relation = connection.sql(f"SELECT * FROM {name}")
        return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def test_duplicates_and_updated_copies_count_once_with_their_latest_outcome(hand_built):
    # 13 deliveries: answered-at-x three times (twice in one object), the chat twice (stale, then updated).
    assert hand_built.summary.flattened["records_in"] == 13
    assert hand_built.summary.table_rows == 10
    (chat,) = rows(hand_built, "SELECT * FROM contact_facts WHERE contactid = 'chat'")
    assert chat["is_handled"] and not chat["is_abandoned"] and chat["agent_username"] == "dave"


def test_queue_interval_metrics_follow_connect_definitions(hand_built):
    metrics = by_key(rows(hand_built, "SELECT * FROM queue_interval_metrics"), "queue_name", "interval_start", "channel")
    nine, half_past_eleven = datetime(2026, 3, 2, 9), datetime(2026, 3, 2, 23)
    assert set(metrics) == {("Sales", nine, "VOICE"), ("Support", nine, "VOICE"), ("Support", nine, "CHAT"),
                            ("Support", half_past_eleven, "VOICE")}

    sales = metrics[("Sales", nine, "VOICE")]
    # Queued: answered-at-x, answered-late, abandoned, transfer-2 (outbound has a queue but no enqueue time).
    assert sales["contacts_queued"] == 4
    # Handled: answered-at-x, answered-late, transfer-2 and the outbound call; answered from the queue: not it.
    assert (sales["contacts_handled"], sales["contacts_answered"]) == (4, 3)
    assert sales["contacts_abandoned"] == 1 and sales["abandonment_rate"] == pytest.approx(1 / 4)
    # Within 30 s: answered-at-x (exactly 30 s) and transfer-2 (5 s); not answered-late (31 s), abandoned (90 s).
    assert sales["contacts_within_service_level"] == 2 and sales["service_level"] == pytest.approx(2 / 4)
    assert sales["service_level_seconds"] == 30
    assert sales["avg_queue_answer_seconds"] == pytest.approx((30 + 31 + 5) / 3)
    assert sales["avg_queue_wait_seconds"] == pytest.approx((30 + 31 + 90 + 5) / 4)
    assert sales["max_queue_wait_seconds"] == 90
    # Handle time = talk + hold + ACW: 300+0+60, 200+60+30, 50+30+20 and the outbound 120+0+10.
    assert sales["avg_handle_seconds"] == pytest.approx((360 + 290 + 100 + 130) / 4)
    # Hold averaged over the contacts put on hold only: answered-late (60 s) and transfer-2 (30 s).
    assert sales["contacts_put_on_hold"] == 2 and sales["avg_hold_seconds"] == pytest.approx((60 + 30) / 2)
    assert (sales["transfers_in"], sales["transfers_out"], sales["callbacks"]) == (1, 0, 0)

    support = metrics[("Support", nine, "VOICE")]
    # Queued: the expired callback and transfer-1; the callback is not abandoned.
    assert (support["contacts_queued"], support["contacts_handled"], support["contacts_abandoned"]) == (2, 1, 0)
    assert support["abandonment_rate"] == 0
    assert support["service_level"] == pytest.approx(1 / 2)  # transfer-1 in 10 s; the callback waited 600 s
    assert support["avg_queue_answer_seconds"] == 10 and support["max_queue_wait_seconds"] == 600
    assert support["avg_handle_seconds"] == 100 and support["avg_hold_seconds"] is None
    assert (support["transfers_in"], support["transfers_out"], support["callbacks"]) == (0, 1, 1)

    chat = metrics[("Support", nine, "CHAT")]
    assert (chat["contacts_queued"], chat["contacts_handled"], chat["contacts_abandoned"]) == (1, 1, 0)
    assert chat["service_level"] == 0 and chat["avg_queue_answer_seconds"] == 45
    assert chat["avg_handle_seconds"] == 400 + 100

    evening = metrics[("Support", half_past_eleven, "VOICE")]
    assert (evening["contacts_queued"], evening["contacts_handled"], evening["service_level"]) == (1, 1, 1)


def test_daily_summary_counts_every_contact_including_ivr_only(hand_built):
    days = by_key(rows(hand_built, "SELECT * FROM daily_summary"), "day", "channel")
    assert set(days) == {(date(2026, 3, 2), "VOICE"), (date(2026, 3, 2), "CHAT")}
    voice = days[(date(2026, 3, 2), "VOICE")]
    # Every voice contact, the IVR-only one included: 9; queued: the 4 in Sales, 2 in Support, evening.
    assert (voice["contacts"], voice["contacts_queued"], voice["contacts_handled"]) == (9, 7, 6)
    assert voice["contacts_abandoned"] == 1 and voice["abandonment_rate"] == pytest.approx(1 / 7)
    # Within 30 s: answered-at-x, transfer-2, transfer-1, evening.
    assert voice["service_level"] == pytest.approx(4 / 7)
    assert voice["avg_queue_answer_seconds"] == pytest.approx((30 + 31 + 5 + 10 + 12) / 5)
    assert voice["queue_answer_seconds"] == 30 + 31 + 5 + 10 + 12 and voice["contacts_answered"] == 5
    assert voice["avg_handle_seconds"] == pytest.approx((360 + 290 + 130 + 100 + 100 + 200) / 6)
    assert voice["handle_seconds"] == 360 + 290 + 130 + 100 + 100 + 200
    assert (voice["transfers_out"], voice["callbacks"], voice["contacts_agent_hung_up_first"]) == (1, 1, 2)


def test_agent_performance(hand_built):
    agents = by_key(rows(hand_built, "SELECT * FROM agent_performance"), "agent_username")
    assert list(agents) == [("alice",), ("bob",), ("carol",), ("dave",)]  # busiest first, then by name
    alice = agents[("alice",)]  # answered-at-x, the outbound call, transfer-2
    assert (alice["contacts_handled"], alice["contacts_handled_outbound"]) == (3, 1)
    assert alice["avg_handle_seconds"] == pytest.approx((360 + 130 + 100) / 3)
    assert alice["avg_hold_seconds"] == 30 and alice["avg_after_contact_work_seconds"] == pytest.approx(90 / 3)
    bob = agents[("bob",)]  # answered-late (hung up first), evening
    assert (bob["contacts_handled"], bob["contacts_agent_hung_up_first"]) == (2, 1)
    assert bob["avg_handle_seconds"] == pytest.approx((290 + 200) / 2) and bob["avg_hold_seconds"] == 60
    carol = agents[("carol",)]
    assert (carol["contacts_handled"], carol["transfers_out"], carol["contacts_agent_hung_up_first"]) == (1, 1, 1)
    assert carol["avg_hold_seconds"] is None
    assert agents[("dave",)]["avg_handle_seconds"] == 500


def test_disconnect_reasons_by_outcome(hand_built):
    reasons = rows(hand_built, "SELECT outcome, disconnect_reason, sum(contacts) AS n FROM disconnect_reasons "
                               "GROUP BY ALL ORDER BY ALL")
    assert [(r["outcome"], r["disconnect_reason"], r["n"]) for r in reasons] == [
        ("abandoned", "CUSTOMER_DISCONNECT", 1),
        ("callback not connected", "CONTACT_FLOW_DISCONNECT", 1),
        ("handled", "AGENT_DISCONNECT", 2),  # answered-late, transfer-1
        ("handled", "CUSTOMER_DISCONNECT", 5),  # answered-at-x, outbound, transfer-2, chat, evening
        ("not queued", "CONTACT_FLOW_DISCONNECT", 1),  # ivr-only
    ]


def test_the_original_visuals_keep_their_output(hand_built):
    assert rows(hand_built, "SELECT * FROM contacts_per_agent") == [
        {"agent_username": "alice", "contacts": 3}, {"agent_username": "bob", "contacts": 2},
        {"agent_username": "carol", "contacts": 1}, {"agent_username": "dave", "contacts": 1}]
    by_queue = rows(hand_built, "SELECT agent_username, queue_name, contacts FROM agent_queue_contacts")
    assert [tuple(r.values()) for r in by_queue] == [
        ("alice", "Sales", 3), ("bob", "Sales", 1), ("bob", "Support", 1), ("carol", "Support", 1),
        ("dave", "Support", 1)]


def test_service_level_threshold_is_a_setting_and_includes_its_boundary(hand_built, tmp_path):
    def sales_within(seconds: int) -> int:
        (sales,) = [r for r in rebuilt(hand_built, tmp_path / str(seconds), "queue_interval_metrics",
                                       service_level_seconds=seconds)
                    if r["queue_name"] == "Sales" and r["channel"] == "VOICE"]
        return sales["contacts_within_service_level"]

    # Sales waits: transfer-2 5 s, answered-at-x 30 s, answered-late 31 s, abandoned 90 s.
    assert [sales_within(seconds) for seconds in (29, 30, 31, 90)] == [1, 2, 3, 4]


def test_reporting_time_zone_shifts_hour_and_day_buckets(hand_built, tmp_path):
    tokyo = by_key(rebuilt(hand_built, tmp_path / "hours", "queue_interval_metrics", report_timezone="Asia/Tokyo"),
                   "queue_name", "interval_start", "channel")
    # 09:xx UTC is 18:xx in Tokyo (UTC+9); evening's 23:30 UTC is 08:30 the next day.
    assert set(tokyo) == {("Sales", datetime(2026, 3, 2, 18), "VOICE"), ("Support", datetime(2026, 3, 2, 18), "VOICE"),
                          ("Support", datetime(2026, 3, 2, 18), "CHAT"), ("Support", datetime(2026, 3, 3, 8), "VOICE")}
    assert tokyo[("Sales", datetime(2026, 3, 2, 18), "VOICE")]["contacts_queued"] == 4
    days = {(r["day"], r["channel"]): r["contacts"]
            for r in rebuilt(hand_built, tmp_path / "days", "daily_summary", report_timezone="Asia/Tokyo")}
    assert days == {(date(2026, 3, 2), "VOICE"): 8, (date(2026, 3, 2), "CHAT"): 1, (date(2026, 3, 3), "VOICE"): 1}


def test_each_aggregate_is_a_parquet_file_a_table_and_an_asset_with_a_preview(hand_built):
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
