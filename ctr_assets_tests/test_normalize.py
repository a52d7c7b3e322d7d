"""Key normalization: the original rule, with collisions kept and counted (design rule 2)."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.records.normalize import (
    EMPTY_KEY_NAME,
    normalize_key,
    normalize_keys,
    unsuffixed,
)
from ctr_assets.records.split import DuplicateKeys, Record, split_values

WORD_KEY = re.compile(r"\w+")
# Keys that tend to collide: case variants, punctuation, suffix look-alikes, nothing at all.
KEYS = st.text(alphabet="aAbÑñ_2 -.!😀İ", max_size=4) | st.sampled_from(["", "a_2", "A", "a", "unnamed"])
SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=4)
)


def _objects(children):
    pairs = st.lists(st.tuples(KEYS, children), max_size=5)
    return pairs.map(dict) | pairs.map(DuplicateKeys)


JSON_VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4) | _objects(children), max_leaves=20)


def leaves(value) -> list:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in leaves(item)]
    if isinstance(value, DuplicateKeys):
        return [leaf for _, item in value for leaf in leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    return [value]


def keys(value) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(key for item in value.values() for key in keys(item))]
    if isinstance(value, list):
        return [key for item in value for key in keys(item)]
    return []


def expected_collisions(value) -> int:
    """Per object: keys minus the distinct names they normalize to."""
    if isinstance(value, (dict, DuplicateKeys)):
        pairs = list(value.items()) if isinstance(value, dict) else list(value)
        names = {normalize_key(key) for key, _ in pairs}
        return len(pairs) - len(names) + sum(expected_collisions(item) for _, item in pairs)
    if isinstance(value, list):
        return sum(expected_collisions(item) for item in value)
    return 0


def test_keys_follow_the_original_rule():
    record = {"ContactId": 1, "Agent-Name": 2, "a b.c": 3, "__x__": 4, "Ñame": 5, "CUSTOMER_Endpoint": 6}
    assert normalize_keys(record) == (
        {"contactid": 1, "agentname": 2, "abc": 3, "__x__": 4, "ñame": 5, "customer_endpoint": 6},
        0,
    )


def test_every_depth_is_normalized_including_objects_inside_lists():
    record = {
        "Agent": {"HierarchyGroups": {"Level1": {"GroupName": "g"}}},
        "MediaStreams": [{"Type": "AUDIO"}, [{"Deep-Key": 1}], 3],
    }
    assert normalize_keys(record)[0] == {
        "agent": {"hierarchygroups": {"level1": {"groupname": "g"}}},
        "mediastreams": [{"type": "AUDIO"}, [{"deepkey": 1}], 3],
    }


def test_values_are_left_exactly_as_they_were():
    record = {"Attributes": {"Greeting": "Hello-World", "Count": 2, "Flag": False, "Gone": None}}
    assert normalize_keys(record) == (
        {"attributes": {"greeting": "Hello-World", "count": 2, "flag": False, "gone": None}},
        0,
    )


def test_colliding_keys_keep_every_value_and_take_suffixes_in_input_order():
    assert normalize_keys({"Name": 1, "name": 2, "NAME": 3, "na-me": 4}) == (
        {"name": 1, "name_2": 2, "name_3": 3, "name_4": 4},
        3,
    )


def test_a_real_key_keeps_the_suffix_name_a_collision_would_take():
    assert normalize_keys({"A": 1, "a": 2, "a_2": 3}) == ({"a": 1, "a_3": 2, "a_2": 3}, 1)
    assert normalize_keys({"a_2": 3, "A": 1, "a": 2}) == ({"a_2": 3, "a": 1, "a_3": 2}, 1)


def test_the_suffix_order_does_not_depend_on_anything_but_the_input_order():
    first = normalize_keys({"x": 1, "X": 2, "x!": 3})
    assert first == normalize_keys({"x": 1, "X": 2, "x!": 3}) == ({"x": 1, "x_2": 2, "x_3": 3}, 2)
    assert normalize_keys({"x!": 3, "X": 2, "x": 1}) == ({"x": 3, "x_2": 2, "x_3": 1}, 2)


def test_repeated_keys_from_the_raw_json_are_kept_as_collisions():
    (record,) = [piece.value for piece in split_values(b'{"Foo":1,"foo":2,"Foo":3}') if isinstance(piece, Record)]
    assert normalize_keys(record) == ({"foo": 1, "foo_2": 2, "foo_3": 3}, 2)


def test_collisions_are_counted_at_every_depth():
    record = {"A": {"B": 1, "b": 2}, "L": [{"C": 1, "c": 2}, DuplicateKeys([("d", 1), ("d", 2)])]}
    assert normalize_keys(record) == ({"a": {"b": 1, "b_2": 2}, "l": [{"c": 1, "c_2": 2}, {"d": 1, "d_2": 2}]}, 3)


def test_a_key_that_normalizes_to_nothing_gets_a_stable_name():
    assert normalize_keys({"": 1, "!!": 2, "-": 3}) == (
        {EMPTY_KEY_NAME: 1, f"{EMPTY_KEY_NAME}_2": 2, f"{EMPTY_KEY_NAME}_3": 3},
        2,
    )
    assert WORD_KEY.fullmatch(EMPTY_KEY_NAME)


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_normalization_never_loses_a_value_and_counts_every_collision(value):
    normalized, collisions = normalize_keys(value)
    assert leaves(normalized) == leaves(value)
    assert collisions == expected_collisions(value)


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_normalization_is_idempotent_and_gives_word_keys(value):
    normalized, _ = normalize_keys(value)
    assert normalize_keys(normalized) == (normalized, 0)
    assert all(WORD_KEY.fullmatch(key) for key in keys(normalized))


@settings(max_examples=200, deadline=None)
@given(st.lists(KEYS | st.sampled_from(["Address", "address", "address_2", "Address_2", "a_10"]), max_size=12))
def test_a_name_without_its_collision_suffixes_is_what_its_key_normalized_to(keys):
    """`unsuffixed` is how a rule about a field (phone protection) reaches every copy of it."""
    normalized, _ = normalize_keys(DuplicateKeys([(key, number) for number, key in enumerate(keys)]))
    for name, number in normalized.items():
        assert unsuffixed(name) == unsuffixed(normalize_key(keys[number]))
