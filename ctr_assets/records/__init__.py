"""Pure record logic: splitting, key normalization, typing and deduplication of CTRs (no Dagster)."""
