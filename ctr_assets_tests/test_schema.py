"""Column type trees: pin, merge, fits, casts and paths (design rules 4 and 5)."""

import pytest

from ctr_assets.records.fields import KNOWN_FIELDS
from ctr_assets.records.schema import (
    cast_expression,
    column_paths,
    fits,
    from_duckdb,
    merge,
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


def test_unknown_subfields_of_known_objects_are_inferred():
    pinned = pin({"agent": {"username": "VARCHAR", "skills": ["VARCHAR"], "score": "DOUBLE"}})
    assert pinned["agent"]["skills"] == ["VARCHAR"] and pinned["agent"]["score"] == "DOUBLE"


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
        ("NULL", "VARCHAR"),
        ("MAP(VARCHAR, BIGINT)", "VARCHAR"),
        ("HUGEINT", "VARCHAR"),
        ({}, "VARCHAR"),
        ("BIGINT", "BIGINT"),
        ("DOUBLE", "DOUBLE"),
        ("BOOLEAN", "BOOLEAN"),
        ({"a": "DATE", "b": ["UUID"], "c": {"d": "BIGINT"}}, {"a": "VARCHAR", "b": ["VARCHAR"], "c": {"d": "BIGINT"}}),
    ],
)
def test_unknown_fields_keep_text_and_what_parquet_holds_exactly(detected, pinned):
    assert pin({"newfield": detected})["newfield"] == pinned


def test_merge_unions_struct_fields_and_widens_conflicts_to_varchar():
    old = {"a": "BIGINT", "s": {"x": "BIGINT"}, "l": [{"y": "BOOLEAN"}]}
    new = {"a": "VARCHAR", "s": {"z": "DOUBLE"}, "l": [{"y": "BIGINT"}], "b": "DATE"}
    assert merge(old, new) == {
        "a": "VARCHAR",
        "s": {"x": "BIGINT", "z": "DOUBLE"},
        "l": [{"y": "VARCHAR"}],
        "b": "DATE",
    }


@pytest.mark.parametrize(
    "old, new, merged",
    [
        ("BIGINT", "DOUBLE", "DOUBLE"),
        ({"a": "BIGINT"}, "VARCHAR", "VARCHAR"),
        (["BIGINT"], {"a": "BIGINT"}, "VARCHAR"),
        ("BOOLEAN", "BIGINT", "VARCHAR"),
        ("TIMESTAMP", "TIMESTAMP", "TIMESTAMP"),
    ],
)
def test_merge_is_symmetric_in_types(old, new, merged):
    assert merge(old, new) == merge(new, old) == merged


def test_fits_allows_missing_struct_fields_but_nothing_else():
    target = {"a": "VARCHAR", "s": {"x": "BIGINT", "y": "VARCHAR"}, "l": [{"z": "VARCHAR"}]}
    assert fits({"s": {"x": "BIGINT"}, "l": [{}]}, target)
    assert not fits({"s": {"w": "BIGINT"}}, target)
    assert not fits({"a": "BIGINT"}, target)
    assert not fits({"s": "VARCHAR"}, target)
    assert not fits({"extra": "VARCHAR"}, target)


def _cast(connection, literal: str, kind, target):
    expression = cast_expression("v", kind, target)
    return connection.sql(f"SELECT {expression} AS v FROM (SELECT {literal} AS v)").fetchall()[0][0]


def test_a_fitting_column_needs_no_cast():
    assert cast_expression('"x"', {"a": "BIGINT"}, {"a": "BIGINT", "b": "VARCHAR"}) == '"x"'


def test_cast_widens_scalars_and_objects_to_text(connection):
    assert _cast(connection, "5::BIGINT", "BIGINT", "VARCHAR") == "5"
    assert _cast(connection, "{'a': 1, 'b': 'x'}", {"a": "INTEGER", "b": "VARCHAR"}, "VARCHAR") == '{"a":1,"b":"x"}'
    assert _cast(connection, "[1, 2]", ["INTEGER"], "VARCHAR") == "[1,2]"
    assert _cast(connection, "5::BIGINT", "BIGINT", "DOUBLE") == 5.0


def test_cast_widens_struct_fields_and_keeps_null_structs_null(connection):
    kind, target = {"a": "INTEGER", "b": "VARCHAR"}, {"a": "VARCHAR", "b": "VARCHAR", "c": "BIGINT"}
    assert _cast(connection, "{'a': 1, 'b': 'x'}", kind, target) == {"a": "1", "b": "x"}
    assert _cast(connection, "NULL::STRUCT(a INTEGER, b VARCHAR)", kind, target) is None


def test_cast_widens_fields_of_structs_inside_lists(connection):
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
