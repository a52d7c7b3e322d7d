"""The documented CTR fields and their types, and the per-record check that holds records to them.

Types are DuckDB type trees (see `schema.py`): a string for a scalar, a dict for a struct, a one-element
list for a list. `"*"` in a struct means "every field of this object". Per-field policy on a value that
does not fit (design rule 4):

- timestamps must be ISO-8601 strings naming a real instant (no offset means UTC); they are rewritten to
  UTC (`...Z`) so readers agree on the instant. Anything else quarantines the record.
- durations and counts must be integers that fit BIGINT (an integral float such as `12.0` is taken as
  `12`); anything else quarantines the record.
- strings widen losslessly: a number or boolean becomes its JSON text; an object or list quarantines.
- known objects (agent, queue, endpoints, ...) must be objects or null; anything else quarantines.
- attribute and tag values are always text: non-string values become their JSON text.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any

import orjson

TIMESTAMP = "TIMESTAMP"
INTEGER = "BIGINT"
STRING = "VARCHAR"
TEXT = "TEXT"  # read as VARCHAR; any JSON value is accepted and kept as text
ANY_FIELD = "*"

_ENDPOINT = {"address": STRING, "type": STRING}
_ARN_NAME = {"arn": STRING, "name": STRING}
_RECORDING = {
    "location": STRING,
    "status": STRING,
    "type": STRING,
    "deletionreason": STRING,
}

KNOWN_FIELDS: dict[str, Any] = {
    "awsaccountid": STRING,
    "awscontacttracerecordformatversion": STRING,
    "agent": {
        "arn": STRING,
        "username": STRING,
        "aftercontactworkduration": INTEGER,
        "aftercontactworkstarttimestamp": TIMESTAMP,
        "aftercontactworkendtimestamp": TIMESTAMP,
        "agentinteractionduration": INTEGER,
        "agentpausedduration": INTEGER,
        "connectedtoagenttimestamp": TIMESTAMP,
        "customerholdduration": INTEGER,
        "longestholdduration": INTEGER,
        "numberofholds": INTEGER,
        "routingprofile": _ARN_NAME,
        "hierarchygroups": {f"level{n}": {"arn": STRING, "groupname": STRING} for n in range(1, 6)},
    },
    "agentconnectionattempts": INTEGER,
    "attributes": {ANY_FIELD: TEXT},
    "channel": STRING,
    "connectedtosystemtimestamp": TIMESTAMP,
    "contactdetails": {"name": STRING, "description": STRING},
    "contactid": STRING,
    "customerendpoint": _ENDPOINT,
    "disconnectreason": STRING,
    "disconnecttimestamp": TIMESTAMP,
    "initialcontactid": STRING,
    "initiationmethod": STRING,
    "initiationtimestamp": TIMESTAMP,
    "instancearn": STRING,
    "lastupdatetimestamp": TIMESTAMP,
    "lastpausedtimestamp": TIMESTAMP,
    "lastresumedtimestamp": TIMESTAMP,
    "mediastreams": [{"type": STRING}],
    "nextcontactid": STRING,
    "previouscontactid": STRING,
    "relatedcontactid": STRING,
    "queue": {
        "arn": STRING,
        "name": STRING,
        "enqueuetimestamp": TIMESTAMP,
        "dequeuetimestamp": TIMESTAMP,
        "duration": INTEGER,
    },
    "recording": _RECORDING,
    "recordings": [
        {
            **_RECORDING,
            "mediastreamtype": STRING,
            "participanttype": STRING,
            "storagetype": STRING,
            "fragmentstartnumber": STRING,
            "fragmentstopnumber": STRING,
            "starttimestamp": TIMESTAMP,
            "stoptimestamp": TIMESTAMP,
        }
    ],
    "scheduledtimestamp": TIMESTAMP,
    "systemendpoint": _ENDPOINT,
    "tags": {ANY_FIELD: TEXT},
    "totalpausecount": INTEGER,
    "totalpauseduration": INTEGER,
    "transfercompletedtimestamp": TIMESTAMP,
    "transferredtoendpoint": _ENDPOINT,
}

# Fields every usable record needs: the dedup key and the table's partition date.
REQUIRED_FIELDS = ("contactid", "initiationtimestamp")
# Already what we would write, so kept as given once it parses (ASCII digits: `\d` takes any script's).
CANONICAL_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
# The canonical form with a time of day that is always real; only its date still needs checking.
CANONICAL_UTC_REAL_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?Z"
)
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


class FieldProblem(ValueError):
    """A record that cannot take the documented type of one of its fields."""

    def __init__(self, reason: str, path: str, detail: str):
        super().__init__(f"{path}: {detail}")
        self.reason = reason
        self.path = path
        self.detail = detail

    def inside(self, name: str) -> "FieldProblem":
        """The same problem seen from the object holding `name` (paths are built only when one fails)."""
        separator = "" if not self.path or self.path.startswith("[]") else "."
        return FieldProblem(self.reason, f"{name}{separator}{self.path}", self.detail)


def conform(record: Any) -> dict:
    """Hold one normalized record to the documented field types, in place; raise `FieldProblem`.

    `KNOWN_FIELDS` is read on every call (a fixed field list must reach records quarantined before it)."""
    conform_changed(record)
    return record


def conform_changed(record: Any) -> bool:
    """`conform`, saying whether any value was rewritten (when not, the record's JSON text still holds)."""
    if type(record) is not dict:
        raise FieldProblem("not_an_object", "$", f"expected a JSON object, got {_json_kind(record)}")
    for field in REQUIRED_FIELDS:
        value = record.get(field)
        if not isinstance(value, str) or not value:
            raise FieldProblem("missing_field", field, f"required, got {_describe(value)}")
    return _conform_object(record, KNOWN_FIELDS)


def _conform_object(obj: dict, spec: dict) -> bool:
    """The hot loop: a dict lookup and a type test per field; fields already right cost nothing more.
    The identity tests only shortcut the common cases; `_conform_value` decides every other one."""
    wildcard = spec.get(ANY_FIELD)
    changed = False
    for name, value in obj.items():
        field = wildcard or spec.get(name)
        if field is None or value is None:
            continue
        kind = type(value)
        try:
            if kind is str:
                if field is STRING or field is TEXT:
                    continue
                if field is TIMESTAMP and CANONICAL_UTC_REAL_TIME.fullmatch(value) and _real_date(value[:10]):
                    continue
            elif kind is int:
                if field is INTEGER and BIGINT_MIN <= value <= BIGINT_MAX:
                    continue
            elif kind is dict and type(field) is dict:
                changed = _conform_object(value, field) or changed
                continue
            conformed, rewritten = _conform_value(value, field)
        except FieldProblem as problem:
            raise problem.inside(name) from None
        if conformed is not value:
            obj[name] = conformed  # replacing a value keeps the dict's size, so iterating on is safe
        changed = changed or rewritten
    return changed


def _conform_value(value: Any, spec: Any) -> tuple[Any, bool]:
    """The value in its documented type, and whether that rewrote anything in it."""
    if type(spec) is dict:
        if type(value) is not dict:
            raise FieldProblem("type_conflict", "", f"expected an object, got {_describe(value)}")
        return value, _conform_object(value, spec)
    if type(spec) is list:
        if type(value) is not list:
            raise FieldProblem("type_conflict", "", f"expected a list, got {_describe(value)}")
        items, changed = [], False
        for item in value:
            if item is not None:
                try:
                    item, rewritten = _conform_value(item, spec[0])
                except FieldProblem as problem:
                    raise problem.inside("[]") from None
                changed = changed or rewritten
            items.append(item)
        return (items, True) if changed else (value, False)
    conformed = _conform_scalar(value, spec)
    return conformed, conformed is not value


def _conform_scalar(value: Any, spec: str) -> Any:
    if spec == TIMESTAMP:
        return _utc_timestamp(value)
    if spec == INTEGER:
        number = int(value) if type(value) is float and value.is_integer() else value
        if type(number) is int and BIGINT_MIN <= number <= BIGINT_MAX:
            return number
        raise FieldProblem("type_conflict", "", f"expected a BIGINT integer, got {_describe(value)}")
    if spec == STRING:
        if type(value) is str:
            return value
        if type(value) in (int, float, bool):
            return orjson.dumps(value).decode()
        raise FieldProblem("type_conflict", "", f"expected a string, got {_describe(value)}")
    return value if type(value) is str else orjson.dumps(value).decode()  # TEXT


@lru_cache(maxsize=4096)
def _real_date(text: str) -> bool:
    """Whether `YYYY-MM-DD` names a real day; a few thousand distinct days cover years of contacts."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _utc_timestamp(value: Any) -> str:
    if type(value) is str:
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is not None:
                moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        except (ValueError, OverflowError):  # not ISO-8601, no such date, or its UTC instant is out of range
            pass
        else:
            return value if CANONICAL_UTC.fullmatch(value) else moment.isoformat(timespec="microseconds") + "Z"
    raise FieldProblem("type_conflict", "", f"expected an ISO-8601 timestamp, got {_describe(value)}")


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _describe(value: Any) -> str:
    # The standard library here: this path is rare, and it writes any value (orjson stops at 64 bits).
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    return f"{_json_kind(value)} {text[:60]}"
