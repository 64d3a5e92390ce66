"""Approve: the one moment a person sees everything before it happens, recorded with who decided."""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl
from prefect import task

from warehouse import batches
from warehouse.connection import transaction
from warehouse.handle import opened


class ApprovalError(ValueError):
    """An approval that cannot be accepted; the message says what to correct."""


def check_approval(
    summary: dict[str, Any],
    approver: str,
    approve: bool,
    removals_acknowledged: int | None,
    override_guard: bool,
    allowed_approvers: tuple[str, ...] = (),
) -> list[str]:
    """Every reason the decision cannot be accepted (empty when it can)."""
    problems = []
    if not approver or not approver.strip():
        problems.append("Name the approver.")
    elif allowed_approvers and approver.strip() not in allowed_approvers:
        problems.append(f"{approver!r} is not an approver (approvers: {', '.join(allowed_approvers)}).")
    if not approve:
        return problems
    problems.extend(f"Cannot approve: {b}." for b in summary["blockers"])
    if summary.get("removals", 0) and removals_acknowledged != summary["removals"]:
        problems.append(
            f"This batch removes {summary['removals']} students: type that number to acknowledge it "
            f"(got {removals_acknowledged})."
        )
    if summary.get("guard") and not override_guard:
        schools = ", ".join(g["school"] for g in summary["guard"])
        problems.append(f"The mass-removal guard holds {schools}: approving needs the explicit override.")
    return problems


def decide_batch(
    con: duckdb.DuckDBPyConnection,
    batch_id: int,
    approver: str,
    approve: bool,
    removals_acknowledged: int | None = None,
    override_guard: bool = False,
    comment: str = "",
    allowed_approvers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Record approval or rejection of a planned batch. Raises ``ApprovalError`` on invalid input.

    Deciding again after a decision returns the recorded decision unchanged.
    """
    done = batches.stage_result(con, batch_id, "approve")
    if done is not None:
        return done
    summary = batches.stage_result(con, batch_id, "plan")
    if summary is None:
        raise ApprovalError(f"Batch {batch_id} has no plan yet: finish review, then show the plan.")
    problems = check_approval(summary, approver, approve, removals_acknowledged, override_guard, allowed_approvers)
    if problems:
        raise ApprovalError(" ".join(problems))
    result = {"approved": bool(approve), "approver": approver.strip(), "removals_acknowledged": removals_acknowledged,
              "override_guard": override_guard, "comment": comment}
    with transaction(con):
        con.execute(
            "UPDATE batches SET decided_by = ?, decided_at = current_timestamp, decision_comment = ? WHERE batch_id = ?",
            [approver.strip(), comment, batch_id],
        )
        batches.set_status(con, batch_id, batches.STATUS_APPROVED if approve else batches.STATUS_REJECTED)
        batches.audit(con, approver.strip(), "batch.approve" if approve else "batch.reject", "batch", batch_id,
                      batch_id, result)
        batches.record_stage(con, batch_id, "approve", result)
    return result


@task(name="record-decision")
def decide_batch_task(warehouse_path: str, batch_id: int, decision: dict[str, Any],
                      allowed_approvers: tuple[str, ...] = ()) -> dict[str, Any]:
    """Prefect task: record the approval form's decision.

    Returns ``{"decision": ..., "problems": []}``; invalid input is returned as problems (the run
    asks again), not raised, so the task itself does not fail.
    """
    with opened(warehouse_path) as con:
        try:
            return {"decision": decide_batch(con, batch_id, allowed_approvers=allowed_approvers, **decision),
                    "problems": []}
        except ApprovalError as error:
            return {"decision": None, "problems": [str(error)]}


@task(name="plan-summary")
def approval_context_task(warehouse_path: str, batch_id: int) -> dict[str, Any]:
    """Prefect task: the plan summary and tables for the approval form, then close the warehouse."""
    from tasks.plan import plan_markdown, plan_tables

    with opened(warehouse_path) as con:
        summary = batches.stage_result(con, batch_id, "plan")
        tables = plan_tables(con, batch_id)
        decision = batches.stage_result(con, batch_id, "approve")
    tables["classes"] = tables["classes"].drop("some_already_enrolled")
    return {"summary": summary, "markdown": plan_markdown(summary, tables), "decision": decision,
            # Text dates, so the tables travel as JSON into Prefect artifacts.
            "tables": {name: frame.with_columns(pl.col(pl.Date, pl.Datetime).cast(pl.String)).to_dicts()
                       for name, frame in tables.items()},
            "classes": tables["classes"].to_dicts(), "removals": tables["removals"].to_dicts()}
