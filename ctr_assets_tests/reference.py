"""An independent reference for every dashboard table, recomputed in plain Python from the raw Firehose objects.

It reads Connect's own JSON (PascalCase keys, no normalization, no DuckDB), keeps the latest copy of each
contact, classifies each contact from the Amazon Connect Administrator Guide's definitions and counts the
tables cell by cell. It was written from those definitions, not from the SQL: when the two disagree, one of
them misreads Connect, and `test_reference.py` says which cell.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

AGENT_QUEUE = re.compile(r"/queue/agent/([^/]+)$")
AGENT_ID = re.compile(r"/agent/([^/]+)$")


@dataclass(frozen=True)
class Settings:
    service_level_seconds: int = 20
    report_timezone: str = "UTC"
    interval_minutes: int = 60
    interval_rule: str = "disconnect"


def records_in(objects: Mapping[str, bytes]) -> list[tuple[str, int, dict]]:
    """(object key, position, record) for every CTR in the objects: concatenated JSON, gzip when named .gz."""
    found = []
    decoder = json.JSONDecoder()
    for key, data in objects.items():
        text = (gzip.decompress(data) if key.endswith(".gz") else data).decode("utf-8")
        position, index = 0, 0
        while position < len(text):
            if text[position].isspace():
                position += 1
                continue
            record, position = decoder.raw_decode(text, position)
            found.append((key, index, record))
            index += 1
    return found


def latest_copies(records: Iterable[tuple[str, int, dict]]) -> list[dict]:
    """Connect delivers at least once: per ContactId the copy with the greatest LastUpdateTimestamp, a tie going
    to the later arrival (object keys start with the arrival time)."""
    best: dict[str, tuple] = {}
    for key, index, record in records:
        rank = (instant(record["LastUpdateTimestamp"]), key, index)
        if record["ContactId"] not in best or rank > best[record["ContactId"]][0]:
            best[record["ContactId"]] = (rank, record)
    return [record for _, record in best.values()]


def instant(text: str | None) -> datetime | None:
    """A Connect timestamp as a naive UTC datetime (milliseconds kept)."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


@dataclass
class Contact:
    """One contact segment and what Connect's definitions say about it."""

    record: dict
    next_method: str | None  # InitiationMethod of the segment its NextContactId names, if that record is here

    def __post_init__(self) -> None:
        record, queue, agent = self.record, self.record.get("Queue") or {}, self.record.get("Agent") or {}
        method = record.get("InitiationMethod")
        self.channel = record.get("Channel")
        self.method = method
        self.reason = record.get("DisconnectReason") or "(none)"
        self.initiated = instant(record["InitiationTimestamp"])
        self.disconnected = instant(record.get("DisconnectTimestamp")) or self.initiated
        self.queue_arn = queue.get("ARN")
        self.enqueued = instant(queue.get("EnqueueTimestamp"))
        self.queue_seconds = queue.get("Duration")
        self.agent = agent.get("Username")
        self.interaction = agent.get("AgentInteractionDuration") or 0
        self.hold = agent.get("CustomerHoldDuration") or 0
        self.holds = agent.get("NumberOfHolds") or 0
        self.acw = agent.get("AfterContactWorkDuration") or 0
        # "Contacts queued": placed in the queue.
        self.queued = self.enqueued is not None
        # "Contacts handled": connected to an agent; a supervisor's MONITOR segment is not a contact handled.
        self.handled = agent.get("ConnectedToAgentTimestamp") is not None and method != "MONITOR"
        self.callback = method == "CALLBACK"
        left_queue_unanswered = self.queued and not self.handled
        # "disconnected by the customer while in the queue... queued for callback are not counted as abandoned";
        # a segment continued by another (callback, move to another queue) did not end in the queue.
        self.abandoned = left_queue_unanswered and not self.callback and record.get("NextContactId") is None
        self.queued_for_callback = left_queue_unanswered and self.next_method == "CALLBACK"
        self.out_queue = left_queue_unanswered and self.next_method == "QUEUE_TRANSFER"
        external = record.get("TransferCompletedTimestamp") is not None
        self.out_by_agent = self.handled and (self.next_method == "TRANSFER" or external)
        self.out_external = self.handled and external
        self.in_by_agent = method == "TRANSFER"
        self.in_from_queue = method == "QUEUE_TRANSFER"
        self.on_hold = self.holds > 0
        self.hung_up_first = self.reason == "AGENT_DISCONNECT"
        self.handle = self.interaction + self.hold + self.acw
        if self.handled:
            self.outcome = "handled"
        elif self.abandoned:
            self.outcome = "abandoned"
        elif self.queued_for_callback:
            self.outcome = "callback requested"
        elif self.out_queue:
            self.outcome = "moved to another queue"
        elif self.queued and self.callback:
            self.outcome = "callback not connected"
        elif self.queued:
            self.outcome = "left the queue for a next segment"
        else:
            self.outcome = "not queued"


def queue_names(records: list[dict]) -> dict[str, str]:
    """Queue ARN -> the name shown: the name on its latest contact; an agent's queue by that agent's username."""
    latest: dict[str, tuple] = {}
    usernames: dict[str, tuple] = {}
    for record in records:
        queue, agent = record.get("Queue") or {}, record.get("Agent") or {}
        order = (instant(record["InitiationTimestamp"]), record["ContactId"])
        arn, name = queue.get("ARN"), queue.get("Name")
        if arn and name is not None and (arn not in latest or order > latest[arn][0]):
            latest[arn] = (order, name)
        agent_id = AGENT_ID.search(agent.get("ARN") or "")
        if agent_id and agent.get("Username") and (
                agent_id.group(1) not in usernames or order > usernames[agent_id.group(1)][0]):
            usernames[agent_id.group(1)] = (order, agent["Username"])
    names = {}
    for arn in {(record.get("Queue") or {}).get("ARN") for record in records} - {None}:
        if arn in latest:
            names[arn] = latest[arn][1]
        elif (agent_queue := AGENT_QUEUE.search(arn)) is not None:
            agent_id = agent_queue.group(1)
            names[arn] = f"Agent queue: {usernames[agent_id][1] if agent_id in usernames else agent_id}"
        else:
            names[arn] = f"Queue {arn.rsplit('/', 1)[-1]}"
    return names


class Report:
    """Every table of the dashboard for `objects` under `settings`, made at `as_of` (naive UTC)."""

    def __init__(self, objects: Mapping[str, bytes], settings: Settings, as_of: datetime) -> None:
        records = latest_copies(records_in(objects))
        methods = {record["ContactId"]: record.get("InitiationMethod") for record in records}
        self.contacts = [Contact(record, methods.get(record.get("NextContactId"))) for record in records]
        self.names = queue_names(records)
        self.settings = settings
        self.zone = ZoneInfo(settings.report_timezone)
        self.as_of = self.local(as_of)

    def local(self, moment: datetime) -> datetime:
        return moment.replace(tzinfo=timezone.utc).astimezone(self.zone).replace(tzinfo=None)

    def counted_at(self, contact: Contact) -> datetime:
        """Connect's reports: the disconnect time; or the enqueue (else initiation) time."""
        if self.settings.interval_rule == "enqueue":
            return self.local(contact.enqueued or contact.initiated)
        return self.local(contact.disconnected)

    def interval(self, contact: Contact) -> datetime:
        moment, minutes = self.counted_at(contact), self.settings.interval_minutes
        return moment.replace(minute=moment.minute // minutes * minutes, second=0, microsecond=0)

    def day(self, contact: Contact) -> date:
        return self.counted_at(contact).date()

    def queue_name(self, contact: Contact) -> str:
        return self.names.get(contact.queue_arn, "(no queue)") if contact.queue_arn else "(no queue)"

    def within_service_level(self, contact: Contact) -> bool:
        return contact.queued and contact.queue_seconds is not None \
            and contact.queue_seconds <= self.settings.service_level_seconds

    def queue_counts(self, group: list[Contact]) -> dict:
        """The queue metrics of a group of contacts, counted straight from the definitions."""
        queued = [c for c in group if c.queued]
        handled = [c for c in group if c.handled]
        answered = [c for c in queued if c.handled]
        on_hold = [c for c in handled if c.on_hold]
        abandoned = [c for c in group if c.abandoned]
        within = [c for c in group if self.within_service_level(c)]
        waits = [c.queue_seconds or 0 for c in queued]
        answer_seconds = sum(c.queue_seconds or 0 for c in answered)
        handle_seconds = sum(c.handle for c in handled)
        hold_seconds = sum(c.hold for c in on_hold)
        return {
            "contacts": len(group),
            "contacts_queued": len(queued),
            "contacts_handled": len(handled),
            "contacts_answered": len(answered),
            "contacts_abandoned": len(abandoned),
            "contacts_within_service_level": len(within),
            "contacts_put_on_hold": len(on_hold),
            "contacts_agent_hung_up_first": sum(c.hung_up_first for c in handled),
            "transfers_in": sum(c.in_by_agent or c.in_from_queue for c in group),
            "transfers_in_by_agent": sum(c.in_by_agent for c in group),
            "transfers_in_from_queue": sum(c.in_from_queue for c in group),
            "transfers_out": sum(c.out_by_agent or c.out_queue for c in group),
            "transfers_out_by_agent": sum(c.out_by_agent for c in group),
            "transfers_out_queue": sum(c.out_queue for c in group),
            "transfers_out_external": sum(c.out_external for c in group),
            "callback_contacts": sum(c.callback for c in group),
            "callback_contacts_handled": sum(c.callback and c.handled for c in group),
            "contacts_queued_for_callback": sum(c.queued_for_callback for c in group),
            "queue_answer_seconds": answer_seconds,
            "queue_wait_seconds": sum(waits),
            "max_queue_wait_seconds": max((c.queue_seconds for c in queued if c.queue_seconds is not None),
                                          default=None),
            "handle_seconds": handle_seconds,
            "hold_seconds": hold_seconds,
            "abandonment_rate": ratio(len(abandoned), len(queued)),
            "service_level": ratio(len(within), len(queued)),
            "service_level_seconds": self.settings.service_level_seconds,
            "avg_queue_answer_seconds": ratio(answer_seconds, len(answered)),
            "avg_queue_wait_seconds": ratio(sum(waits), len(queued)),
            "avg_handle_seconds": ratio(handle_seconds, len(handled)),
            "avg_hold_seconds": ratio(hold_seconds, len(on_hold)),
        }

    def agent_counts(self, group: list[Contact]) -> dict:
        on_hold = [c for c in group if c.on_hold]
        handle = sum(c.handle for c in group)
        interaction = sum(c.interaction for c in group)
        hold = sum(c.hold for c in on_hold)
        acw = sum(c.acw for c in group)
        return {
            "contacts_handled": len(group),
            "contacts_handled_outbound": sum(c.method == "OUTBOUND" for c in group),
            "callback_contacts_handled": sum(c.callback for c in group),
            "contacts_put_on_hold": len(on_hold),
            "contacts_agent_hung_up_first": sum(c.hung_up_first for c in group),
            "transfers_out": sum(c.out_by_agent for c in group),
            "handle_seconds": handle,
            "interaction_seconds": interaction,
            "hold_seconds": hold,
            "after_contact_work_seconds": acw,
            "avg_handle_seconds": ratio(handle, len(group)),
            "avg_interaction_seconds": ratio(interaction, len(group)),
            "avg_hold_seconds": ratio(hold, len(on_hold)),
            "avg_after_contact_work_seconds": ratio(acw, len(group)),
        }

    def tables(self) -> dict[str, list[dict]]:
        """Each aggregate as a list of rows (dicts keyed by the table's column names)."""
        interval = timedelta(minutes=self.settings.interval_minutes)
        handled = [c for c in self.contacts if c.handled and c.agent is not None]
        return {
            "queue_interval_metrics": self.grouped(self.contacts, lambda c: (self.interval(c), c.queue_arn, c.channel),
                                                   lambda key, group: {
                "interval_start": key[0], "interval_end": key[0] + interval,
                "is_partial": key[0] + interval > self.as_of, "queue_arn": key[1],
                "queue_name": self.queue_name(group[0]), "channel": key[2], **self.queue_counts(group)}),
            "daily_summary": self.grouped(self.contacts, lambda c: (self.day(c), c.channel), lambda key, group: {
                "day": key[0], "is_partial": self.day_is_partial(key[0]), "channel": key[1],
                **self.queue_counts(group)}),
            "agent_performance": self.grouped(handled, lambda c: (self.day(c), c.agent), lambda key, group: {
                "day": key[0], "is_partial": self.day_is_partial(key[0]), "agent_username": key[1],
                **self.agent_counts(group)}),
            "contacts_per_agent": self.grouped(handled, lambda c: c.agent, lambda key, group: {
                "agent_username": key, "contacts": len(group)}),
            "agent_queue_contacts": self.grouped(handled, lambda c: (self.day(c), c.agent, c.queue_arn),
                                                 lambda key, group: {
                "day": key[0], "agent_username": key[1], "queue_arn": key[2], "queue_name": self.queue_name(group[0]),
                "contacts": len(group)}),
            "disconnect_reasons": self.grouped(
                self.contacts, lambda c: (self.day(c), c.queue_arn, c.channel, c.outcome, c.reason),
                lambda key, group: {"day": key[0], "queue_arn": key[1], "queue_name": self.queue_name(group[0]),
                                    "channel": key[2], "outcome": key[3], "disconnect_reason": key[4],
                                    "contacts": len(group)}),
        }

    def day_is_partial(self, day: date) -> bool:
        return datetime.combine(day + timedelta(days=1), time()) > self.as_of

    @staticmethod
    def grouped(contacts: list[Contact], key: Callable, row: Callable) -> list[dict]:
        groups: dict = defaultdict(list)
        for contact in contacts:
            groups[key(contact)].append(contact)
        return [row(group_key, group) for group_key, group in groups.items()]


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None
