"""Prefect artifacts: the validation report and the plan a person reads in the UI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.validate import batch_issues, write_issue_report
from warehouse.connection import opened


def artifact_key(prefix: str, batch_id: int) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return f"{prefix}-batch-{batch_id}"


@task(name="publish-validation-report")
def publish_issues_task(warehouse_path: str, batch_id: int, report_dir: str) -> int:
    """Publish every validation issue of the batch as a table artifact and an .xlsx; return how many."""
    with opened(warehouse_path) as con:
        issues = batch_issues(con, batch_id)
        if issues.height:
            write_issue_report(con, batch_id, Path(report_dir) / f"batch-{batch_id}" / "validation-report.xlsx")
    if issues.height:
        create_table_artifact(
            key=artifact_key("validation", batch_id),
            table=issues.to_dicts(),
            description=f"Batch {batch_id}: rows with errors are not imported; fix them and upload again.",
        )
    return issues.height


@task(name="publish-plan")
def publish_plan_task(batch_id: int, context: dict[str, Any]) -> None:
    """Publish the plan summary (markdown) and its classes and removals (tables)."""
    create_markdown_artifact(key=artifact_key("plan", batch_id), markdown=context["markdown"],
                             description=f"What batch {batch_id} will do if approved")
    if context["classes"]:
        create_table_artifact(key=artifact_key("plan-classes", batch_id), table=context["classes"])
    if context["removals"]:
        create_table_artifact(key=artifact_key("plan-removals", batch_id), table=context["removals"])
