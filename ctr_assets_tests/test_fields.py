"""Holding normalized records to the documented CTR field types (design rule 4)."""

import copy

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.records.fields import FieldProblem, conform, conform_changed
from ctr_assets.records.split import INT64_MIN, UINT64_MAX


def ctr(**fields) -> dict:
    """A minimal normalized CTR."""
    return {"contactid": "c-1", "initiationtimestamp": "2026-11-27T10:00:00Z", **fields}


def problem(record) -> tuple[str, str]:
    with pytest.raises(FieldProblem) as caught:
        conform(record)
    return caught.value.reason, caught.value.path


def test_a_well_typed_record_passes_unchanged():
    record = ctr(
        awsaccountid="123456789012",
        channel="VOICE",
        lastupdatetimestamp="2026-11-27T10:06:00.123Z",
        agent={
            "username": "ann",
            "agentinteractionduration": 120,
            "connectedtoagenttimestamp": "2026-11-27T10:01:00Z",
            "routingprofile": {"arn": "arn:rp", "name": "Basic"},
            "hierarchygroups": {"level1": {"arn": "arn:l1", "groupname": "Sales"}},
        },
        queue={"arn": "arn:q", "name": "Q", "duration": 30, "enqueuetimestamp": "2026-11-27T10:00:30Z"},
        mediastreams=[{"type": "AUDIO"}],
        recordings=[{"location": "s3://x", "starttimestamp": "2026-11-27T10:01:00Z"}],
        attributes={"greeting": "hi"},
        contactdetails={},
        nextcontactid=None,
        somethingnew={"any": [1, "two"]},
    )
    assert conform(copy.deepcopy(record)) == record


def test_a_value_that_is_not_an_object_is_refused():
    assert problem(["not", "a", "record"]) == ("not_an_object", "$")


@pytest.mark.parametrize("missing", ["contactid", "initiationtimestamp"])
def test_the_dedup_key_and_partition_date_are_required(missing):
    record = ctr()
    del record[missing]
    assert problem(record) == ("missing_field", missing)
    assert problem(ctr(**{missing: ""})) == ("missing_field", missing)
    assert problem(ctr(**{missing: 42})) == ("missing_field", missing)


@pytest.mark.parametrize(
    "fields, path",
    [
        ({"agent": "James"}, "agent"),
        ({"queue": ["q"]}, "queue"),
        ({"agent": {"routingprofile": "Basic"}}, "agent.routingprofile"),
        ({"queue": {"duration": "12"}}, "queue.duration"),
        ({"agent": {"customerholdduration": 1.5}}, "agent.customerholdduration"),
        ({"agent": {"numberofholds": True}}, "agent.numberofholds"),
        ({"disconnecttimestamp": "yesterday"}, "disconnecttimestamp"),
        ({"disconnecttimestamp": 1764237600}, "disconnecttimestamp"),
        ({"queue": {"enqueuetimestamp": "2026-11-27 25:00"}}, "queue.enqueuetimestamp"),
        ({"channel": {"type": "VOICE"}}, "channel"),
        ({"customerendpoint": {"address": ["+1"]}}, "customerendpoint.address"),
        ({"mediastreams": "AUDIO"}, "mediastreams"),
        ({"mediastreams": ["AUDIO"]}, "mediastreams[]"),
        ({"recordings": [{"starttimestamp": "soon"}]}, "recordings[].starttimestamp"),
        ({"agent": {"hierarchygroups": {"level2": {"groupname": {}}}}}, "agent.hierarchygroups.level2.groupname"),
    ],
)
def test_a_value_that_cannot_take_its_documented_type_is_a_type_conflict_at_its_path(fields, path):
    assert problem(ctr(**fields)) == ("type_conflict", path)


def test_the_problem_message_names_the_path_and_the_value():
    with pytest.raises(FieldProblem, match=r'agent: expected an object, got string "James"'):
        conform(ctr(agent="James"))


@pytest.mark.parametrize(
    "stamp",
    ["2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-27T24:00:00Z", "٢٠٢٦-11-27T10:00:00Z"],
)
def test_a_canonical_looking_timestamp_that_is_no_instant_is_a_type_conflict(stamp):
    assert problem(ctr(disconnecttimestamp=stamp)) == ("type_conflict", "disconnecttimestamp")


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_timestamp_whose_utc_instant_is_out_of_range_is_a_type_conflict(stamp):
    assert problem(ctr(disconnecttimestamp=stamp)) == ("type_conflict", "disconnecttimestamp")


@pytest.mark.parametrize(
    "stamp, utc",
    [
        ("2026-11-27T23:30:00-02:00", "2026-11-28T01:30:00.000000Z"),
        ("2026-11-28T05:00:00.250+05:30", "2026-11-27T23:30:00.250000Z"),
        ("2026-11-27T10:00:00+00:00", "2026-11-27T10:00:00.000000Z"),
        ("2026-11-27T10:00:00", "2026-11-27T10:00:00.000000Z"),
        ("2026-11-27T10:00:00Z", "2026-11-27T10:00:00Z"),
        ("2026-11-27T10:00:00.5Z", "2026-11-27T10:00:00.5Z"),
    ],
)
def test_timestamps_are_rewritten_to_utc(stamp, utc):
    record = conform(ctr(initiationtimestamp=stamp, queue={"dequeuetimestamp": stamp}))
    assert record["initiationtimestamp"] == utc
    assert record["queue"]["dequeuetimestamp"] == utc


def test_integral_floats_become_integers():
    record = conform(ctr(queue={"duration": 12.0}, agentconnectionattempts=-0.0))
    assert record["queue"]["duration"] == 12 and type(record["queue"]["duration"]) is int
    assert type(record["agentconnectionattempts"]) is int


@pytest.mark.parametrize("number", [2**63, 2**64 - 1, -(2**63) - 1, 1e300, -1e19])
def test_an_integer_field_beyond_bigint_is_a_type_conflict(number):
    assert problem(ctr(queue={"duration": number})) == ("type_conflict", "queue.duration")


def test_bigint_limits_are_integers():
    record = conform(ctr(totalpausecount=2**63 - 1, totalpauseduration=-(2**63)))
    assert (record["totalpausecount"], record["totalpauseduration"]) == (2**63 - 1, -(2**63))


def test_numbers_and_booleans_in_known_string_fields_widen_to_their_json_text():
    record = conform(
        ctr(
            channel=5,
            customerendpoint={"address": 15551234567, "type": True},
            queue={"name": 1.5},
            awsaccountid="123456789012345678901234567890",  # an integer beyond 64 bits arrives as text
        )
    )
    assert record["channel"] == "5"
    assert record["customerendpoint"] == {"address": "15551234567", "type": "true"}
    assert record["queue"]["name"] == "1.5"
    assert record["awsaccountid"] == "123456789012345678901234567890"


def test_attribute_and_tag_values_are_always_text():
    record = conform(
        ctr(
            attributes={"n": 5, "f": 0.5, "b": False, "o": {"x": [1, None]}, "l": ["a"], "s": "kept", "gone": None},
            tags={"cost": 12},
        )
    )
    assert record["attributes"] == {
        "n": "5", "f": "0.5", "b": "false", "o": '{"x":[1,null]}', "l": '["a"]', "s": "kept", "gone": None
    }
    assert record["tags"] == {"cost": "12"}


def test_nulls_are_allowed_for_every_known_field():
    record = ctr(agent=None, queue={"duration": None, "enqueuetimestamp": None}, mediastreams=[None], attributes=None)
    assert conform(copy.deepcopy(record)) == record


def test_unknown_fields_and_unknown_subfields_are_left_for_inference():
    record = ctr(newfield=[1, {"a": "b"}], agent={"username": "ann", "newsubfield": {"deep": 1.5}})
    assert conform(copy.deepcopy(record)) == record


# Values of every JSON kind, including ones each documented type must rewrite or refuse.
ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=INT64_MIN, max_value=UINT64_MAX)  # what splitting yields
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["2026-11-27T10:00:00Z", "2026-11-27T10:00:00.5Z", "2026-11-27T11:00:00+01:00", "2026-02-30T10:00:00Z",
                       "2026-11-27 10:00:00", "12", "ann"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["arn", "username", "duration",
        "enqueuetimestamp", "level1", "groupname", "type", "x"]), children, max_size=3),
    max_leaves=8,
)
KNOWN_NAMES = ["agent", "queue", "channel", "attributes", "recordings", "mediastreams", "totalpausecount",
               "lastupdatetimestamp", "customerendpoint", "somethingnew"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KNOWN_NAMES), ANY_VALUE, max_size=6))
def test_a_record_is_reported_rewritten_exactly_when_its_json_changed(fields):
    """The flatten step writes a record's original text when nothing was rewritten."""
    record = ctr(**fields)
    before = orjson.dumps(record)
    try:
        rewritten = conform_changed(record)
    except FieldProblem:
        return
    assert rewritten == (orjson.dumps(record) != before)


@pytest.mark.parametrize("fields", [{"recordings": [{"type": 5}]}, {"mediastreams": [None, {"type": True}]},
                                    {"agent": {"hierarchygroups": {"level1": {"groupname": 7}}}},
                                    {"queue": {"enqueuetimestamp": "2026-11-27T11:00:00+01:00"}}])
def test_a_value_rewritten_deep_inside_lists_and_objects_is_reported(fields):
    record = ctr(**copy.deepcopy(fields))
    assert conform_changed(record) is True
    assert conform_changed(record) is False  # now in its documented types
