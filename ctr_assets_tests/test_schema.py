"""Column type trees: pin, evolve, casts and paths (design rules 4 and 5)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctr_assets.records.fields import KNOWN_FIELDS
from ctr_assets.records.schema import (
    cast_to,
    column_paths,
    evolve,
    from_duckdb,
    pin,
    relation_schema,
    render,
)


def test_render_writes_duckdb_type_text_with_quoted_names():
    kind = {"a": "BIGINT", 'we"ird': ["VARCHAR"], "s": [{"t": "TIMESTAMP"}], "text": "TEXT"}
    assert render(kind) == 'STRUCT("a" BIGINT, "we""ird" VARCHAR[], "s" STRUCT("t" TIMESTAMP)[], "text" VARCHAR)'


def test_trees_read_back_from_duckdb_types_and_render_to_the_same_types(connection):
    relation = connection.sql(
        "SELECT 1::BIGINT AS n, {'a': [1.5::DOUBLE], 'b': {'c': 'x'}} AS s, [{'d': TIMESTAMP '2026-01-01'}] AS l"
    )
    schema = relation_schema(relation)
    assert schema == {"n": "BIGINT", "s": {"a": ["DOUBLE"], "b": {"c": "VARCHAR"}}, "l": [{"d": "TIMESTAMP"}]}
    for original in relation.types:
        rendered = connection.sql(f"SELECT CAST(NULL AS {render(from_duckdb(original))})").types[0]
        assert rendered == original


def test_known_fields_take_their_documented_types_whatever_was_detected():
    pinned = pin({"contactid": "UUID", "channel": "BIGINT", "initiationtimestamp": "VARCHAR", "agent": "JSON"})
    assert pinned["contactid"] == "VARCHAR"
    assert pinned["channel"] == "VARCHAR"
    assert pinned["initiationtimestamp"] == "TIMESTAMP"
    assert pinned["agent"]["username"] == "VARCHAR"
    assert pinned["agent"]["aftercontactworkduration"] == "BIGINT"
    assert pinned["agent"]["hierarchygroups"]["level5"] == {"arn": "VARCHAR", "groupname": "VARCHAR"}
    assert pinned["recordings"][0]["starttimestamp"] == "TIMESTAMP"
    assert set(KNOWN_FIELDS) - {"attributes", "tags"} <= set(pinned)


def test_unknown_subfields_of_known_objects_keep_their_shape_with_text_scalars():
    pinned = pin({"agent": {"username": "VARCHAR", "skills": ["VARCHAR"], "score": "DOUBLE", "gone": "NULL"}})
    assert pinned["agent"]["skills"] == ["VARCHAR"] and pinned["agent"]["score"] == "VARCHAR"
    assert "gone" not in pinned["agent"]


def test_attributes_are_all_text_and_left_out_until_one_exists():
    assert "attributes" not in pin({})
    assert "attributes" not in pin({"attributes": {}})
    assert pin({"attributes": {"n": "BIGINT", "d": "DATE", "o": {"x": "BIGINT"}}})["attributes"] == {
        "n": "VARCHAR",
        "d": "VARCHAR",
        "o": "VARCHAR",
    }


@pytest.mark.parametrize(
    "detected, pinned",
    [
        ("DATE", "VARCHAR"),
        ("TIMESTAMP", "VARCHAR"),
        ("TIMESTAMP WITH TIME ZONE", "VARCHAR"),
        ("UUID", "VARCHAR"),
        ("JSON", "VARCHAR"),
        ("MAP(VARCHAR, BIGINT)", "VARCHAR"),
        ("HUGEINT", "VARCHAR"),
        ("BIGINT", "VARCHAR"),
        ("DOUBLE", "VARCHAR"),
        ("BOOLEAN", "VARCHAR"),
        ({}, "VARCHAR"),
        ({"gone": "NULL"}, {"gone": "VARCHAR"}),
        (["NULL"], ["VARCHAR"]),
        ({"a": "DATE", "b": ["UUID"], "c": {"d": "BIGINT"}}, {"a": "VARCHAR", "b": ["VARCHAR"], "c": {"d": "VARCHAR"}}),
    ],
)
def test_unknown_fields_keep_their_shape_and_every_scalar_is_text(detected, pinned):
    assert pin({"newfield": detected})["newfield"] == pinned


def test_an_unknown_value_nested_deeper_than_a_column_may_nest_is_kept_as_text():
    deep = "VARCHAR"
    for _ in range(21):
        deep = [deep]
    assert pin({"deep": deep, "fine": [[{"a": "BIGINT"}]]}) == {**pin({}), "deep": "VARCHAR", "fine": [[{"a": "VARCHAR"}]]}


def test_an_unknown_field_that_held_only_nulls_gets_no_column_yet_and_inside_an_object_is_text():
    pinned = pin({"newfield": "NULL", "campaign": {"campaignid": "NULL", "deep": {"x": "NULL"}}, "empty": {}})
    assert "newfield" not in pinned
    assert pinned["campaign"] == {"campaignid": "VARCHAR", "deep": {"x": "VARCHAR"}} and pinned["empty"] == "VARCHAR"


def test_evolve_adds_columns_and_struct_fields_and_retypes_nothing():
    table = {"a": "VARCHAR", "s": {"x": "BIGINT"}, "l": [{"y": "VARCHAR"}], "t": "TIMESTAMP"}
    batch = {"a": {"o": "VARCHAR"}, "s": {"z": "VARCHAR"}, "l": [{"y": "VARCHAR", "w": "VARCHAR"}], "b": ["VARCHAR"],
             "t": "TIMESTAMP"}
    evolved, conflicts = evolve(table, batch)
    assert conflicts == []
    assert evolved == {"a": "VARCHAR", "s": {"x": "BIGINT", "z": "VARCHAR"}, "l": [{"y": "VARCHAR", "w": "VARCHAR"}],
                       "t": "TIMESTAMP", "b": ["VARCHAR"]}


@pytest.mark.parametrize(
    "column, values",
    [({"x": "VARCHAR"}, "VARCHAR"), (["VARCHAR"], {"x": "VARCHAR"}), ({"x": {"y": "VARCHAR"}}, {"x": "VARCHAR"}),
     ("BIGINT", "VARCHAR"), ([{"x": "VARCHAR"}], ["VARCHAR"])],
)
def test_values_that_cannot_take_their_columns_type_go_to_its_variant_column(column, values):
    evolved, conflicts = evolve({"c": column}, {"c": values})
    assert conflicts == ["c"]
    assert evolved == {"c": column, "c__v_text": "VARCHAR"}


SCALARS = st.sampled_from(["VARCHAR", "BIGINT", "TIMESTAMP"])
TREES = st.recursive(SCALARS, lambda inner: st.lists(inner, min_size=1, max_size=1)
                     | st.dictionaries(st.sampled_from("xyz"), inner, min_size=1, max_size=3), max_leaves=6)
SCHEMAS = st.dictionaries(st.sampled_from("abcd"), TREES, max_size=4)


def _leaves(schema: dict) -> dict[str, str]:
    return {path: kind for path, kind in column_paths(schema).items() if not kind.startswith("STRUCT")}


@given(SCHEMAS, SCHEMAS)
def test_evolve_never_retypes_a_column_and_stores_every_value_somewhere(table, batch):
    evolved, conflicts = evolve(table, batch)
    assert _leaves(evolved).items() >= _leaves(table).items()  # every existing column and field as it was
    for name, kind in batch.items():
        if name in conflicts:
            assert evolved[f"{name}__v_text"] == "VARCHAR"
        else:  # every value of the batch has a place of its type, or inside a text column
            assert _holds(evolved[name], kind), name
    assert evolve(evolved, batch) == (evolved, conflicts)  # the same batch again changes nothing


def _holds(column, values) -> bool:
    if column == "VARCHAR" or column == values:
        return True
    if isinstance(column, dict) and isinstance(values, dict):
        return all(name in column and _holds(column[name], sub) for name, sub in values.items())
    if isinstance(column, list) and isinstance(values, list):
        return _holds(column[0], values[0])
    return False


def _cast(connection, literal: str, kind, target):
    expression = cast_to("v", kind, target)
    return connection.sql(f"SELECT {expression} AS v FROM (SELECT {literal} AS v)").fetchall()[0][0]


def test_a_column_of_the_target_type_needs_no_cast():
    assert cast_to('"x"', {"a": "BIGINT"}, {"a": "BIGINT"}) == '"x"'


def test_cast_turns_scalars_to_text_and_objects_to_their_json_text(connection):
    assert _cast(connection, "5::BIGINT", "BIGINT", "VARCHAR") == "5"
    assert _cast(connection, "1.5::DOUBLE", "DOUBLE", "VARCHAR") == "1.5"
    assert _cast(connection, "{'a': 1, 'b': 'x'}", {"a": "INTEGER", "b": "VARCHAR"}, "VARCHAR") == '{"a":1,"b":"x"}'
    assert _cast(connection, "[1, 2]", ["INTEGER"], "VARCHAR") == "[1,2]"


def test_cast_converts_struct_fields_and_keeps_null_structs_null(connection):
    kind, target = {"a": "INTEGER", "b": "VARCHAR"}, {"a": "VARCHAR", "b": "VARCHAR", "c": "BIGINT"}
    assert _cast(connection, "{'a': 1, 'b': 'x'}", kind, target) == {"a": "1", "b": "x"}
    assert _cast(connection, "NULL::STRUCT(a INTEGER, b VARCHAR)", kind, target) is None


def test_cast_converts_fields_of_structs_inside_lists(connection):
    kind, target = [{"n": "INTEGER"}], [{"n": "VARCHAR"}]
    assert _cast(connection, "[{'n': 1}, {'n': 2}]", kind, target) == [{"n": "1"}, {"n": "2"}]


def test_column_paths_list_every_column_and_struct_field():
    schema = {"agent": {"username": "VARCHAR", "hold": "BIGINT"}, "recordings": [{"location": "VARCHAR"}], "n": "TEXT"}
    assert column_paths(schema) == {
        "agent": 'STRUCT("username" VARCHAR, "hold" BIGINT)',
        "agent.username": "VARCHAR",
        "agent.hold": "BIGINT",
        "recordings": 'STRUCT("location" VARCHAR)[]',
        "recordings[].location": "VARCHAR",
        "n": "VARCHAR",
    }
