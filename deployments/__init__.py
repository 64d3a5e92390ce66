"""Serving the flows to a local Prefect server."""
