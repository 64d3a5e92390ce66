"""Approve: the one moment a person sees everything before it happens, recorded with who decided."""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl
from pydantic import SecretStr

from tasks.approvers import ApproverError, verify_approver
from tasks.plan_view import plan_version as current_plan_version
from warehouse import batches, requests
from warehouse.connection import transaction
from warehouse.handle import Warehouse
from warehouse.requests import Request


class ApprovalError(ValueError):
    """An approval that cannot be accepted; the message says what to correct."""


class PlanChanged(ApprovalError):
    """The plan an approval names is not the batch's plan any more: nothing was decided."""

    def __init__(self, batch_id: int, shown_version: str, why: str):
        self.batch_id, self.shown_version, self.why = batch_id, shown_version, why
        super().__init__(
            f"The plan of batch {batch_id} changed since version {shown_version} was shown ({why}); nothing was "
            f"committed. Show it again with `rosterflow plan {batch_id}` and approve the version it shows.")


def check_approval(
    summary: dict[str, Any],
    approve: bool,
    removals_acknowledged: int | None,
    override_guard: bool,
) -> list[str]:
    """Every reason the decision cannot be accepted (empty when it can)."""
    problems: list[str] = []
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


def plan_changes(con: duckdb.DuckDBPyConnection, batch_id: int, shown_version: str) -> str | None:
    """Why the batch's plan is no longer the one shown as ``shown_version`` (None when it still is):
    students changed since the batch was matched, or the plan in the warehouse is another version."""
    stale = batches.changes_since(con, batch_id, "match")
    if stale:
        return "students changed since it was matched: " + "; ".join(stale)
    current = current_plan_version(con, batch_id)
    if current != shown_version:
        recorded = (batches.stage_result(con, batch_id, "plan") or {}).get("version")
        if recorded and recorded != current:
            return f"its tables were changed after it was made (it was made as version {recorded}, it is now {current})"
        return f"it is now version {current}"
    return None


def decide_batch(
    con: duckdb.DuckDBPyConnection,
    batch_id: int,
    approver: str,
    approve: bool,
    removals_acknowledged: int | None = None,
    override_guard: bool = False,
    comment: str = "",
    *,
    secret: str | None,
    plan_version: str | None = None,
) -> dict[str, Any]:
    """Record approval or rejection of a planned batch by a registered approver who gives their
    secret. An approval names the plan version it approves (``plan_version``): it is refused with
    ``PlanChanged`` when the plan is no longer that version or students changed since the batch was
    matched. Raises ``ApprovalError`` (or ``ApproverError``) on invalid input; nothing is written
    then but the audit of a refused secret.

    Deciding again after a decision returns the recorded decision unchanged (to its approver).
    """
    action = "batch.approve" if approve else "batch.reject"
    done = batches.stage_result(con, batch_id, "approve")
    if done is not None:
        verify_approver(con, approver, secret, action, batch_id)
        return done
    summary = batches.stage_result(con, batch_id, "plan")
    if summary is None:
        raise ApprovalError(f"Batch {batch_id} has no plan yet: show it with `rosterflow plan {batch_id}` first "
                            "(after its review), then approve the version it shows.")
    if approve:
        if not plan_version or not plan_version.strip():
            raise ApprovalError(f"Name the plan version you approve: `rosterflow plan {batch_id}` shows it; then "
                                f"`rosterflow approve {batch_id} --plan VERSION ...`.")
        # Before the secret: whether the plan changed does not depend on who asks, so a flow run
        # replaying an earlier form (whose secret it no longer keeps) reaches the same verdict.
        why = plan_changes(con, batch_id, plan_version.strip())
        if why:
            raise PlanChanged(batch_id, plan_version.strip(), why)
    approver = verify_approver(con, approver, secret, action, batch_id)
    problems = check_approval(summary, approve, removals_acknowledged, override_guard)
    if problems:
        raise ApprovalError(" ".join(problems))
    result = {"approved": bool(approve), "approver": approver, "removals_acknowledged": removals_acknowledged,
              "override_guard": override_guard, "comment": comment,
              "plan_version": plan_version.strip() if approve else None}
    with transaction(con):
        con.execute(
            "UPDATE batches SET decided_by = ?, decided_at = current_timestamp, decision_comment = ? WHERE batch_id = ?",
            [approver, comment, batch_id],
        )
        batches.set_status(con, batch_id, batches.STATUS_APPROVED if approve else batches.STATUS_REJECTED)
        batches.audit(con, approver, action, "batch", batch_id, batch_id, result)
        batches.record_stage(con, batch_id, "approve", result)
    return result


def forget_changed_plan(con: duckdb.DuckDBPyConnection, batch_id: int, actor: str) -> None:
    """Forget the batch's plan (and its match, when students changed since) so it is made again."""
    stale = batches.changes_since(con, batch_id, "match")
    with transaction(con):
        batches.clear_stages(con, batch_id, ("match", "review", "plan", "approve") if stale else ("plan", "approve"))
        batches.audit(con, actor, "batch.plan_changed", "batch", batch_id, batch_id, {"changed_since": stale})


def decide_from_form(wh: Warehouse, batch_id: int, decision: dict[str, Any],
                     secret: SecretStr | None, request_id: str | None = None) -> dict[str, Any]:
    """Record the approval form's decision, made by the approver whose secret it carries.

    Returns ``{"decision": ..., "problems": [], "plan_changed": None}``; invalid input is returned as
    problems (the run asks again), not raised, so the task itself does not fail; ``plan_changed`` says
    why when the plan is no longer the version the form showed (the run plans again and asks again).
    The secret stays a ``SecretStr`` until it is checked (never shown in a log, never cached).

    ``request_id`` (the form's run-input key): a refused form is judged once. A re-run after a
    suspension reads the same form back without its secret, and gets the first verdict again (with
    ``already_applied``) instead of another one ("no secret given"), audited and logged again.
    """
    with wh.write() as con:
        if request_id:
            done = requests.applied_outcome(con, request_id)
            if done is not None:
                return {**done, "already_applied": True}
        try:
            outcome = {"decision": decide_batch(con, batch_id, secret=secret.get_secret_value() if secret else None,
                                                **decision),
                       "problems": [], "plan_changed": None}
        except PlanChanged as changed:
            outcome = {"decision": None, "problems": [str(changed)], "plan_changed": changed.why}
        except (ApprovalError, ApproverError) as error:
            outcome = {"decision": None, "problems": [str(error)], "plan_changed": None}
        if request_id and outcome["decision"] is None:
            request = Request(request_id=request_id, kind="approval.form", batch_id=batch_id, payload=decision,
                              submitted_by=str(decision.get("approver") or ""))
            with transaction(con):
                requests.mark_applied(con, request, outcome)
        return outcome


def approval_context(wh: Warehouse, batch_id: int) -> dict[str, Any]:
    """The plan summary and tables for the approval form (read, then the warehouse is let go)."""
    from tasks.plan import plan_tables
    from tasks.plan_view import plan_markdown

    with wh.read() as con:
        summary = batches.stage_result(con, batch_id, "plan")
        summary = {**summary, "version": current_plan_version(con, batch_id)}
        tables = plan_tables(con, batch_id)
        decision = batches.stage_result(con, batch_id, "approve")
    tables["classes"] = tables["classes"].drop("some_already_enrolled")
    return {"summary": summary, "markdown": plan_markdown(summary, tables), "decision": decision,
            # Text dates, so the tables travel as JSON into Prefect artifacts.
            "tables": {name: frame.with_columns(pl.col(pl.Date, pl.Datetime).cast(pl.String)).to_dicts()
                       for name, frame in tables.items()},
            "classes": tables["classes"].to_dicts(), "removals": tables["removals"].to_dicts()}
