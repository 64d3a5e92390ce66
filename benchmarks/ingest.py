"""Ingest + validate against the raw spreadsheet read, at 10k, 100k and 1M rows.

    python -m benchmarks.ingest [--sizes 10000 100000 1000000] [--repeat 3] [--strings shared inline]

Sheets are generated once (seeded) and cached in benchmarks/.cache, twice: with shared strings (as
Excel saves a workbook) and with inline strings (as some exporters write it). Each measurement runs
in a fresh child process so its peak memory is its own (the parser's child process included); the
raw read and rosterflow take turns on the same file. Reports median seconds, the ratio rosterflow /
raw read, peak RSS in MB and its ratio, and where rosterflow's time goes: the read (the reader's
child process), staging the rows, normalising the cells, the validation rules and the warehouse
write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"
SCHOOLS = [f"School {i:02d}" for i in range(20)]
COURSES = ["ALGE1", "ALGE2", "GEOM", "LV3", "LV4"]
HEADER = ["School", "Teacher First Name", "Teacher Last Name", "Teacher Email", "Class Period", "Course Code",
          "Student First Name", "Student Last Name", "Student ID", "SSID", "Other ID", "Date of Birth", "Grade"]


def sheet_path(rows: int, strings: str = "shared") -> Path:
    """The cached roster of ``rows`` rows, generated on first use (the same rows either way).

    ``strings="shared"`` saves text cells as Excel does: once each, in the workbook's shared strings
    table, the cells pointing at them. ``"inline"`` writes each text cell in place (xlsxwriter's
    constant_memory mode, as some exporters do), which the reader parses about 4x slower."""
    import xlsxwriter

    path = CACHE / f"ingest-{rows}{'' if strings == 'inline' else '-shared'}.xlsx"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.xlsx")
    # Without constant_memory, xlsxwriter keeps the cells until it closes and writes shared strings.
    workbook = xlsxwriter.Workbook(str(partial), {"constant_memory": strings == "inline"})
    sheet = workbook.add_worksheet("Roster")
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, HEADER)
    for r, (texts, birth, grade) in enumerate(roster_rows(rows), start=1):
        sheet.write_row(r, 0, texts)
        sheet.write_datetime(r, 11, birth, date_format)
        sheet.write_string(r, 12, grade)
    workbook.close()
    partial.rename(path)
    return path


def roster_rows(rows: int):
    """The benchmark's rows, seeded by their number: the text cells, the birth date, the grade."""
    rng = random.Random(rows)
    firsts = ["Ana", "Liam", "Noah", "Emma", "Olivia", "Mia", "Lucas", "Ethan", "Sofia", "José"]
    lasts = ["Silva", "Garcia", "Nguyen", "Smith", "Johnson", "Brown", "Lee", "Patel", "Kim", "Peña"]
    for r in range(1, rows + 1):
        school = rng.randrange(len(SCHOOLS))
        teacher = school * 10 + rng.randrange(10)
        texts = [SCHOOLS[school], f"T{teacher}", "Teacher", f"t{teacher}@example.org",
                 f"Period {rng.randint(1, 6)}", rng.choice(COURSES), rng.choice(firsts),
                 rng.choice(lasts), f"{r:08d}", f"S{r:09d}"]
        birth = dt.datetime(2008 + rng.randrange(10), rng.randint(1, 12), rng.randint(1, 28))
        yield texts, birth, str(rng.randint(1, 12))


def measure_raw(path: Path) -> dict:
    import fastexcel

    start = time.perf_counter()
    fastexcel.read_excel(path).load_sheet(0).to_polars()
    return {"seconds": time.perf_counter() - start}


# Where ingest + validate spends its time, by the function that does each part (wrapped in the
# child process that measures, so the code measured is the code that runs).
PARTS = {
    "read": ("tasks.ingest", "read_roster_files"),  # the reader's child process: parse, hand the rows over
    "normalise": ("tasks.validate", "clean_rows"),  # invisible characters, NFC, spaces, types
    "store_staged": ("tasks.ingest", "store_staged"),
    "store_validation": ("tasks.validate", "store_validation"),
    "read_files": ("tasks.ingest", "read_files"),  # read + the staged rows' frame and contract
    "check_rows": ("tasks.validate", "check_rows"),  # normalise + every rule
}


def time_parts(spent: dict[str, float]) -> None:
    """Wrap each function of ``PARTS`` so that the seconds spent in it add up in ``spent[part]``.
    For a benchmark's own child process only: it replaces module attributes for good."""
    import importlib

    for part, (module_name, name) in PARTS.items():
        module = importlib.import_module(module_name)
        function = getattr(module, name)

        def timed(*args, _function=function, _part=part, **kwargs):
            start = time.perf_counter()
            try:
                return _function(*args, **kwargs)
            finally:
                spent[_part] = spent.get(_part, 0.0) + time.perf_counter() - start

        setattr(module, name, timed)


def measure_rosterflow(path: Path) -> dict:
    # The reader's child process is started first, as `rosterflow register` and `migrate` start it
    # before their own imports: it imports the parser while they import theirs.
    from tasks.isolated_read import start_reader

    reader = start_reader()
    # Imported before the clock starts, as the raw read imports fastexcel before its clock: what is
    # timed is the work on the file (a command pays these imports once, at its start).
    import schemas.roster  # noqa: F401
    import tasks.validate  # noqa: F401
    from tasks.pipeline import ingest_and_validate, open_batch
    from warehouse import catalog
    from warehouse.handle import Warehouse

    # pandera imports its polars backend (and hypothesis, when installed, as in the dev install) on
    # the first validation: an import like those above, paid once per command, not per file.
    schemas.roster.StagedRosterRow.validate(schemas.roster.StagedRosterRow.empty())
    spent: dict[str, float] = {}
    time_parts(spent)
    with tempfile.TemporaryDirectory() as folder:
        wh = Warehouse(Path(folder) / "w.duckdb", who="benchmark")
        with wh.write() as con:
            catalog.add_schools(con, SCHOOLS, "bench")
            catalog.add_courses(con, {c: c for c in COURSES}, "bench")
            config = {"files": [str(path)], "term": "Fall 2026", "subscription_type": "K12"}
            batch = open_batch(con, "bench", "migration", config, "bench")
        start = time.perf_counter()
        with reader:
            ingest, result = ingest_and_validate(wh, batch, [str(path)], None, 1_048_575, reader=reader)
        elapsed = time.perf_counter() - start
    assert ingest["rows_staged"] == result["rows_staged"] and not ingest["file_errors"], ingest
    parts = {
        "read": spent["read"],
        "stage": spent["read_files"] - spent["read"],  # the rows into one frame, the staged contract
        "normalise": spent["normalise"],
        "validate": spent["check_rows"] - spent["normalise"],
        "write": spent["store_staged"] + spent["store_validation"],
    }
    parts["other"] = elapsed - sum(parts.values())  # holds, the catalog read, the stage records
    return {"seconds": elapsed, "parts": parts}


def _child(kind: str, path: str) -> None:
    measured = measure_raw(Path(path)) if kind == "raw" else measure_rosterflow(Path(path))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({**measured, "peak_rss_mb": max(own, children) / 1024}))


def run(kind: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.ingest", "--child", kind, str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(size: int, strings: str, repeat: int) -> dict:
    """Medians over ``repeat`` turns, the raw read and rosterflow taking turns on the same file."""
    path = sheet_path(size, strings)
    raw, ours = [], []
    for _ in range(repeat):
        raw.append(run("raw", path))
        ours.append(run("rosterflow", path))
    raw_s = statistics.median(r["seconds"] for r in raw)
    ours_s = statistics.median(r["seconds"] for r in ours)
    raw_mb = statistics.median(r["peak_rss_mb"] for r in raw)
    ours_mb = statistics.median(r["peak_rss_mb"] for r in ours)
    return {
        "rows": size, "strings": strings, "repeat": repeat,
        "raw_read_s": round(raw_s, 3), "ingest_validate_s": round(ours_s, 3), "ratio": round(ours_s / raw_s, 2),
        "raw_peak_mb": round(raw_mb), "ingest_validate_peak_mb": round(ours_mb),
        "memory_ratio": round(ours_mb / raw_mb, 2),
        "parts_s": {part: round(statistics.median(r["parts"][part] for r in ours), 3) for part in ours[0]["parts"]},
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--strings", nargs="+", choices=["shared", "inline"], default=["shared", "inline"],
                        help="how the workbooks store their text: shared (as Excel saves) or inline")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return
    report = []
    for size in args.sizes:
        for strings in args.strings:
            report.append(measure(size, strings, args.repeat))
            print(json.dumps(report[-1]), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
