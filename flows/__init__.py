"""Prefect flows: batch registration and yearly migration. Flows only wire the stages."""
