"""The dedup rule rendered two ways from one declaration: the ORDER BY of the local merge and the condition
of a MERGE agree on every pair of copies, nulls and ties included."""

from contextlib import closing
from itertools import product

import duckdb

from ctr_assets.records.dedup import RANKING, order_by, outranks

# Every copy over two values or null per ranking column: each pair of them is a case (729 in all).
VALUES = {"lastupdatetimestamp": ("TIMESTAMP '2026-03-02 10:00'", "TIMESTAMP '2026-03-02 11:00'", "NULL::TIMESTAMP"),
          "_arrived_at": ("TIMESTAMP '2026-03-02 10:05'", "TIMESTAMP '2026-03-02 11:05'", "NULL::TIMESTAMP"),
          "_source_key": ("'raw/a'", "'raw/b'", "NULL::VARCHAR")}


def test_outranks_is_the_order_by_with_the_holder_keeping_a_tie():
    assert [column for column, _ in RANKING] == list(VALUES)
    copies = [", ".join(f"{value} AS {column}" for column, value in zip(VALUES, values))
              for values in product(*VALUES.values())]
    pairs = " UNION ALL ".join(f"SELECT {number} AS pair, {origin} AS origin, {copy}"
                               for number, (challenger, holder) in enumerate(product(copies, repeat=2))
                               for origin, copy in ((1, challenger), (0, holder)))
    with closing(duckdb.connect()) as connection:
        connection.execute(f"CREATE TABLE pairs AS {pairs}")
        disagreements = connection.sql(f"""
            WITH first AS (SELECT pair, origin FROM pairs
                           QUALIFY row_number() OVER (PARTITION BY pair ORDER BY {order_by()}, origin) = 1)
            SELECT count(*) FILTER (WHERE ({outranks('c', 'h')}) IS DISTINCT FROM (first.origin = 1)), count(*)
            FROM pairs AS c JOIN pairs AS h ON c.pair = h.pair AND c.origin = 1 AND h.origin = 0
            JOIN first ON first.pair = c.pair""").fetchall()
    assert disagreements == [(0, 729)]
