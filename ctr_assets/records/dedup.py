"""The dedup rule (design rule 3), declared once: every engine that merges renders it from here.

Connect delivers each contact at least once and re-delivers updated copies, often hours later. The table
keeps one row per `contactid`: the copy with the greatest `lastupdatetimestamp`; on a tie the later
arrival (the raw object that arrived last, then the greater raw key, so the choice never depends on
processing order). A copy already in the table wins a complete tie, so reprocessing changes nothing.
"""

from __future__ import annotations

from ctr_assets.records.columns import ARRIVED_AT, SOURCE_KEY
from ctr_assets.records.schema import quote

PRIMARY_KEY = "contactid"
# The order copies of one contact are ranked in, best first: each column breaks the ties of those before it.
RANKING = (("lastupdatetimestamp", "DESC"), (ARRIVED_AT, "DESC"), (SOURCE_KEY, "DESC"))


def order_by(alias: str = "") -> str:
    """The ranking as an SQL ORDER BY list; a null (a copy without the value) ranks last."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{column} {direction} NULLS LAST" for column, direction in RANKING)


def outranks(challenger: str, holder: str) -> str:
    """The ranking as an SQL condition: true when the `challenger` relation's copy ranks before the `holder`'s
    (nulls last), false on a complete tie, so the holder (the stored copy, in a MERGE) keeps a tie."""
    def column(relation: str, name: str) -> str:
        return f"{relation}.{quote(name)}"

    def before(name: str, direction: str) -> str:
        mine, theirs = column(challenger, name), column(holder, name)
        return f"({mine} IS NOT NULL AND ({theirs} IS NULL OR {mine} {'>' if direction == 'DESC' else '<'} {theirs}))"

    *ties_broken, (last, direction) = RANKING
    condition = before(last, direction)
    for name, direction in reversed(ties_broken):
        condition = (f"{before(name, direction)} OR ({column(challenger, name)} IS NOT DISTINCT FROM "
                     f"{column(holder, name)} AND ({condition}))")
    return condition
