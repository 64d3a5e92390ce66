"""The whole path in a real browser: Chromium drives the Prefect UI that `make serve` starts.

A data team starts a registration from the deployment's run form, a reviewer decides the row the
matcher asks about in the paused run's review form, a wrong approver is refused, the registered
approver approves, and the warehouse holds the committed rows. Screenshots of each step are saved
under var/browser/ (the review form's among them: what a reviewer sees).

Chromium is Debian's (`apt-get install -y chromium`, which `make test` runs where it can);
Playwright drives it through its executable. The UI's selectors are kept in the small helpers
below, so a change of the forms changes them in one place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.batch_helpers import APPROVER, add_district_catalog, approve_and_commit, approver_secret, start
from warehouse.handle import opened

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "var" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The sheet registered through the UI: next year's sheet of the school whose row the matcher asks about.
SHEET = "migration-summerwind-high-school.xlsx"
TIMEOUT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _api(base: str, path: str, body: dict | None = None):
    request = urllib.request.Request(f"{base}/api{path}", method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _wait(what: str, check, timeout: float = 120, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout} s" + (f"; serve's log ends:\n{log.read_text()[-3000:]}" if log else ""))


@pytest.fixture
def served(tmp_path: Path, district):
    """`make serve`'s entry point on a free port, with its own Prefect home, warehouse, outbox and inbox;
    the warehouse holds the district registered last year and the approver Pat Admin."""
    warehouse = tmp_path / "warehouse.duckdb"
    with opened(warehouse):
        pass
    add_district_catalog(warehouse, district)
    approve_and_commit(warehouse, start(warehouse, "registration", district.registration_files,
                                        district.registration_term, district.subscription_type)["batch_id"])
    with opened(warehouse) as con:
        secret = approver_secret(con)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(next(f for f in district.migration_files if f.name == SHEET), inbox / SHEET)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "ROSTERFLOW_PORT": str(port),
                "ROSTERFLOW_WAREHOUSE": str(warehouse), "ROSTERFLOW_OUTBOX": str(tmp_path / "outbox"),
                "ROSTERFLOW_INBOX": str(inbox), "ROSTERFLOW_TIMEZONE": "America/Chicago",
                # The runner looks for runs to start (a resumed run among them) every second, not every 10.
                "PREFECT_RUNNER_POLL_FREQUENCY": "1"})
    # Server services this test does not use, off: fewer writers to the server's SQLite database
    # (each one a chance of "database is locked") and less work on a busy machine.
    env.update({f"PREFECT_SERVER_SERVICES_{service}_ENABLED": "false" for service in (
        "SCHEDULER", "LATE_RUNS", "FOREMAN", "PAUSE_EXPIRATIONS", "CANCELLATION_CLEANUP", "TRIGGERS")})
    log = tmp_path / "serve.log"
    # A session of its own: the server and the flow runs it starts are ended with it.
    serve = subprocess.Popen([sys.executable, "-m", "deployments.serve"], cwd=ROOT, env=env, start_new_session=True,
                             stdout=log.open("ab"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait("both deployments served", lambda: len(_api(base, "/deployments/filter", {})) == 2, 180, log)
        yield {"base": base, "warehouse": warehouse, "secret": secret, "log": log}
    finally:
        # Ctrl-C to serve alone, as a person stops `make serve`: it stops serving, then its server (on
        # SIGTERM Prefect's runner does not stop; with the server stopped at once, it waits for it).
        # Then whatever is left of its session (a flow run's process).
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(60)
        finally:
            try:
                os.killpg(serve.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            serve.wait(30)


# --- The UI's selectors (Prefect 3.8.8's default UI), one place each --------------------------------

def _property(scope, title: str, containing: str = ""):
    """The form field (label, description, control) whose title starts with ``title`` (and contains
    ``containing``); the innermost when one field holds others."""
    also = f" and contains(normalize-space(.), '{containing}')" if containing else ""
    return scope.locator(
        f"xpath=.//span[contains(@class, 'schema-form-property__label') and starts-with(normalize-space(.), "
        f"'{title}'){also}]/ancestor::div[contains(concat(' ', @class, ' '), ' p-label ')][1]").last


def form_field(scope, title: str):
    """The text box of the form field titled ``title``."""
    return _property(scope, title).locator("textarea, input:not([type=checkbox])").first


def tick(scope, title: str) -> None:
    """Switch on the toggle titled ``title`` (its checkbox is hidden under the switch drawn over it)."""
    box = _property(scope, title).locator("input[type=checkbox]")
    if not box.is_checked():
        box.dispatch_event("click")
    assert box.is_checked()


def choose(page, field, option: re.Pattern, screenshot: Path | None = None) -> str:
    """Open the drop-down of ``field`` (see ``_property``) and click the first option matching
    ``option``; the option's text. ``screenshot``: where to save the page with the options open."""
    select = field.locator("button.p-select-button__control")
    select.focus()
    select.press("ArrowDown")  # opens the options (a click alone does not, in this UI)
    choice = page.get_by_role("option").filter(has_text=option).first
    text = choice.inner_text()
    if screenshot:
        page.screenshot(path=screenshot)
    choice.click()
    return text


def open_resume_form(page, base: str, run_id: str):
    """The paused run's page, its Resume button and the form's dialog. Opened before the page has
    loaded the run, the dialog asks a bare "Do you want to resume this flow run?" without the form:
    then the page is loaded again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(3):
        page.goto(f"{base}/runs/flow-run/{run_id}")
        page.locator("a", has_text="batch-registration").first.wait_for()  # the run's details are in
        page.get_by_role("button", name="Resume").click()
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        try:
            dialog.locator(".schema-form-property").first.wait_for(timeout=15_000)
            return dialog
        except PlaywrightTimeout:
            continue
    raise AssertionError("the paused run's form did not show: " + dialog.inner_text())


def form_description(dialog):
    """The markdown shown above the form's fields."""
    return dialog.locator(".p-modal__body > article.markdown-renderer").first


def press_submit(scope, accepted, what: str):
    """Press ``scope``'s Submit button until ``accepted()`` returns something (it raises
    ``AssertionError`` or Playwright's timeout while the submission is not taken), at most 3 times;
    what it returned. Now and then Prefect's server, on SQLite, refuses a submission ("database is
    locked" in its log, "Oops. Something went wrong." in the UI) and nothing is done: submit again,
    as a person would."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        button = scope.get_by_role("button", name="Submit")
        if attempt == 0:
            button.click()
        else:
            # The "Oops" notice of the refusal sits over the form's buttons (its own close button is
            # not always clickable while it animates), and a click there lands on the notice: the
            # button is pressed with a click event of its own, which no notice catches.
            button.dispatch_event("click")
        try:
            return accepted()
        except (AssertionError, PlaywrightTimeout):
            continue
    raise AssertionError(f"{what} after 3 submissions")


def submit_run(page, base: str, log: Path) -> list:
    """Submit the deployment's run form; the runs created, found through the API (the UI's "View run"
    notice does not always come on a busy machine)."""
    return press_submit(page, lambda: _wait("the run created", lambda: _api(base, "/flow_runs/filter", {}), 30, log),
                        "no run was created")


def submit(dialog) -> None:
    """Submit the form and wait for its dialog to close (the run resumed)."""
    press_submit(dialog, lambda: dialog.wait_for(state="hidden", timeout=20_000) or True,
                 "the form was not accepted")


def _suspended_again(base: str, run_id: str, seen: set):
    """The run's state once it waits with a form it has not shown before (a suspended run passes
    through paused states without a form on its way back). Prefect stores the form (its schema and
    description) just after the state that names it: until both are there, the UI shows a bare
    "Do you want to resume this flow run?"."""
    def check():
        state = _api(base, f"/flow_runs/{run_id}")["state"]
        keys = (state.get("state_details") or {}).get("run_input_keyset") or {}
        if state["type"] == "PAUSED" and keys.get("description") and keys["description"] not in seen:
            for key in (keys["schema"], keys["description"]):
                _api(base, f"/flow_runs/{run_id}/input/{key}")  # not found (yet): an HTTPError, an OSError
            seen.add(keys["description"])
            return state
        if state["type"] in ("FAILED", "CRASHED", "COMPLETED", "CANCELLED"):
            raise AssertionError(f"the run ended {state['name']}: {state.get('message')}")
        return None
    return check


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed and could not be installed here "
                    "(`apt-get install -y chromium`, which `make test` runs, needs root and Debian's packages)")
def test_a_registration_from_the_run_form_reviewed_refused_and_approved_in_the_browser(served, district):
    from playwright.sync_api import sync_playwright

    base, log = served["base"], served["log"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        try:
            # The data team: the deployment's run form holds the files, term and subscription only.
            page.goto(f"{base}/deployments")
            page.get_by_role("link", name="batch-registration").first.click()
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()
            form = page.locator("body")
            form.get_by_role("button", name="Add item").click()
            form_field(form, "Roster files").fill(SHEET)
            form_field(form, "Starting term").fill(district.migration_term)
            form_field(form, "Subscription type").fill(district.subscription_type)
            assert "Warehouse" not in page.inner_text("body") and "Auto Link Probability" not in page.inner_text("body")
            page.screenshot(path=SCREENSHOTS / "1-run-form.png", full_page=True)
            runs = submit_run(page, base, log)
            assert len(runs) == 1  # one submission, one run
            run_id = runs[0]["id"]
            seen: set = set()
            _wait("the run waits for review", _suspended_again(base, run_id, seen), 180, log)

            # The reviewer: the item's title names the row, its options its candidates; choosing one links it.
            dialog = open_resume_form(page, base, run_id)
            item = _property(dialog, "Item ", containing="Elena Allen")
            assert f"({SHEET}, sheet Roster, row " in item.inner_text() and "Why asked:" in item.inner_text()
            # Each candidate whole in the field's description, under the number its option starts with
            # (the drop-down cuts a long option short).
            assert "Candidate 1: Caleb Allen, born 2012-12-19, ID 30000006" in item.inner_text()
            page.screenshot(path=SCREENSHOTS / "2-review-form.png")
            form_field(dialog, "Your name").fill("Rita Reviewer")
            chosen = choose(page, item, re.compile(r"^link 1: Caleb Allen, born 2012-12-19"),
                            SCREENSHOTS / "3-review-options.png")
            assert "Caleb Allen" in chosen and "2012-12-19" in chosen
            page.screenshot(path=SCREENSHOTS / "4-review-decided.png")
            submit(dialog)
            _wait("the run waits for approval", _suspended_again(base, run_id, seen), 180, log)

            # A wrong approver is refused, and the form says so at its top when it comes back.
            dialog = open_resume_form(page, base, run_id)
            assert "Approve batch" in dialog.inner_text()
            # The plan's counts beside the decision, where the UI shows them whatever the window's size.
            decision = _property(dialog, "Approve and commit").inner_text()
            assert "registers " in decision and " subscription(s) of " in decision, decision
            form_field(dialog, "Approver name").fill("Bob Nobody")
            form_field(dialog, "Your approver secret").fill("guessed")
            tick(dialog, "Approve and commit")
            submit(dialog)
            _wait("the approval form asked again", _suspended_again(base, run_id, seen), 180, log)
            dialog = open_resume_form(page, base, run_id)
            # The refusal is the first thing the form says, above its fields; the answers are kept (not the secret).
            refusal = form_description(dialog)
            assert refusal.inner_text().startswith("Not accepted")
            assert "'Bob Nobody' is not a registered approver" in refusal.inner_text()
            notice = refusal.get_by_text("Not accepted").first
            assert notice.is_visible()
            assert notice.bounding_box()["y"] < _property(dialog, "Approver name").bounding_box()["y"]
            assert form_field(dialog, "Approver name").input_value() == "Bob Nobody"
            page.screenshot(path=SCREENSHOTS / "5-approval-refused.png")

            # The registered approver approves; the run commits and ends Completed.
            form_field(dialog, "Approver name").fill(APPROVER)
            form_field(dialog, "Your approver secret").fill(served["secret"])
            tick(dialog, "Approve and commit")
            submit(dialog)
            final = _wait("the run ended", lambda: (s := _api(base, f"/flow_runs/{run_id}")["state"])["type"] in (
                "COMPLETED", "FAILED", "CRASHED", "CANCELLED") and s, 180, log)
            assert final["type"] == "COMPLETED", final
            page.goto(f"{base}/runs/flow-run/{run_id}")
            page.get_by_text("Completed").first.wait_for()
            page.screenshot(path=SCREENSHOTS / "6-completed.png")
        finally:
            page.screenshot(path=SCREENSHOTS / "last.png")
            browser.close()

    assert chosen.startswith("link")
    with opened(served["warehouse"]) as con:
        assert con.execute("SELECT status FROM batches WHERE batch_id = 2").fetchall() == [("committed",)]
        assert con.execute("SELECT count(*) FROM commit_markers").fetchall() == [(2,)]
        decided = con.execute("SELECT action, reviewer FROM review_items WHERE batch_id = 2").fetchall()
        assert decided == [("link", "Rita Reviewer")]
        enrolled = con.execute("SELECT count(*) FROM enrollments WHERE created_batch = 2").fetchall()[0][0]
        assert enrolled > 30
        caleb = con.execute("SELECT count(DISTINCT s.student_key) FROM students s WHERE s.first_name = 'Caleb'"
                            " AND s.last_name = 'Allen'").fetchall()[0][0]
        assert caleb == 1  # the row was linked to Caleb, not made a second student
