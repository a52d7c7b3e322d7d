"""The dedup rule (design rule 3), declared once: every engine that merges renders it from here.

Connect delivers each contact at least once and re-delivers updated copies, often hours later. The table
keeps one row per `contactid`: the copy with the greatest `lastupdatetimestamp`; on a tie the later
arrival (the raw object that arrived last, then the greater raw key, so the choice never depends on
processing order). A copy already in the table wins a complete tie, so reprocessing changes nothing.
"""

from __future__ import annotations

from ctr_assets.records.columns import ARRIVED_AT, SOURCE_KEY

PRIMARY_KEY = "contactid"
# The order copies of one contact are ranked in, best first: each column breaks the ties of those before it.
RANKING = (("lastupdatetimestamp", "DESC"), (ARRIVED_AT, "DESC"), (SOURCE_KEY, "DESC"))


def order_by(alias: str = "") -> str:
    """The ranking as an SQL ORDER BY list; a null (a copy without the value) ranks last."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{column} {direction} NULLS LAST" for column, direction in RANKING)
