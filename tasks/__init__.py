"""The stages of a batch: plain functions over polars frames and a warehouse connection, each with a
thin Prefect task wrapper that opens the warehouse for the duration of the task."""
