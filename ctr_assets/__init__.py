"""Amazon Connect contact trace records as a Dagster asset graph."""
