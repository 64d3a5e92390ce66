"""Splink, the peer the matching benchmark compares rosterflow with, run in its own environment.

    .venv-peer/bin/python benchmarks/peer_splink.py INCOMING.parquet EXISTING.parquet OUT.parquet [--seed 1]

Runs inside `.venv-peer` (`make bench-peer-env`: splink and what it needs, apart from the project's pinned
set), never in the project's environment, so it imports neither polars nor rosterflow: the
benchmark writes the two frames to parquet, runs this script as a subprocess and reads its answer.

INCOMING has ``row_no``, EXISTING ``student_key``; both have ``first_name, last_name, date_of_birth``
and any of ``student_id, ssid, other_id`` (an ID column compared only when both sides carry it).
Writes OUT with ``row_no, student_key, match_probability, match_weight, rank`` (rank 1 = most likely;
at most ``--keep`` candidates per row, each with probability >= ``--floor``) and prints one JSON line
with the seconds each step took.

The model is the one Splink's documentation builds for a link-only job on people: names standardised
(lower case, accents and punctuation removed); ``--names-model separate`` (its febrl4 example, two
5,000-person files) compares each name with term-frequency adjustment, ``combined`` (its 50k-persons
example) has one forename-surname comparison whose levels include swapped names, with term frequencies
of the full name; then the date-of-birth comparison and Damerau-Levenshtein levels (1, 2 edits) on each
ID. Blocking for prediction on each name, the swapped names, the birth date and each ID; the prior from
deterministic rules (recall 0.8); u from 1e6 random pairs (as in the febrl4 example; 1e7 gave the same
decisions within 0.05% on a noisy 5,000-student district and took six times longer); m by expectation
maximisation in two sessions, blocked on the birth date and on the full name.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import duckdb
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

ID_COLUMNS = ("student_id", "ssid", "other_id")


def _standardised(con: duckdb.DuckDBPyConnection, path: str, key: str, table: str) -> list[str]:
    """Loads one side as ``table`` with ``unique_id`` and standardised names; returns its ID columns
    that hold any value."""
    columns = [r[0] for r in con.execute("select name from parquet_schema(?)", [path]).fetchall()]
    ids = [c for c in ID_COLUMNS if c in columns]

    def name(column: str) -> str:
        return (f"nullif(trim(regexp_replace(lower(strip_accents({column})), '[^a-z]+', ' ', 'g')), '') "
                f"as {column}")

    id_select = "".join(f", nullif(trim(cast({c} as varchar)), '') as {c}" for c in ids)
    con.execute(f"create table {table} as select cast({key} as bigint) as unique_id, {name('first_name')}, "
                f"{name('last_name')}, cast(date_of_birth as date) as date_of_birth{id_select} "
                f"from read_parquet(?)", [path])
    return [c for c in ids if con.execute(f"select count({c}) from {table}").fetchall()[0][0] > 0]


def link(incoming_path: str, existing_path: str, out_path: str, seed: int, floor: float, keep: int,
         max_pairs_u: float = 1e6, names_model: str = "separate") -> dict:
    """Trains and runs the Splink model; writes the ranked candidates; returns the step timings."""
    timings = {}
    start = time.perf_counter()
    con = duckdb.connect()
    incoming_ids = _standardised(con, incoming_path, "row_no", "incoming")
    existing_ids = _standardised(con, existing_path, "student_key", "existing")
    ids = [c for c in incoming_ids if c in existing_ids]

    if names_model == "combined":
        con.execute("alter table incoming add column full_name varchar").fetchall()
        con.execute("alter table existing add column full_name varchar").fetchall()
        for table in ("incoming", "existing"):
            con.execute(f"update {table} set full_name = first_name || ' ' || last_name").fetchall()
        names = [cl.ForenameSurnameComparison("first_name", "last_name", forename_surname_concat_col_name="full_name")]
    else:
        names = [cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
                 cl.NameComparison("last_name").configure(term_frequency_adjustments=True)]
    comparisons = [
        *names,
        cl.DateOfBirthComparison("date_of_birth", input_is_string=False),
        *[cl.DamerauLevenshteinAtThresholds(c, [1, 2]) for c in ids],
    ]
    blocking = [
        block_on("first_name"),
        block_on("last_name"),
        "l.first_name = r.last_name and l.last_name = r.first_name",
        block_on("date_of_birth"),
        *[block_on(c) for c in ids],
    ]
    settings = SettingsCreator(link_type="link_only", unique_id_column_name="unique_id",
                               blocking_rules_to_generate_predictions=blocking, comparisons=comparisons)
    db_api = DuckDBAPI(connection=con)
    # Registered by table name; the display names keep the incoming side recognisable in the output.
    frames = [db_api.register("incoming", dataset_display_name="incoming"),
              db_api.register("existing", dataset_display_name="existing")]
    linker = Linker(frames, settings, log_level=logging.WARNING)
    timings["load"] = time.perf_counter() - start

    step = time.perf_counter()
    deterministic = [block_on("first_name", "last_name", "date_of_birth"), *[block_on(c) for c in ids]]
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.8)
    timings["prior"] = time.perf_counter() - step
    step = time.perf_counter()
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs_u, seed=seed)
    timings["u"] = time.perf_counter() - step
    step = time.perf_counter()
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("date_of_birth"), estimate_without_term_frequencies=True)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "last_name"), estimate_without_term_frequencies=True)
    timings["em"] = time.perf_counter() - step

    step = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=floor, warning_mode="never")
    relation = predictions.as_duckdbpyrelation()
    con.register("predictions", relation)
    # link_only pairs come with the two sides in either column; the incoming row is the one whose
    # source dataset is 'incoming'.
    con.execute(f"""
        copy (
            select row_no, student_key, match_probability, match_weight,
                   row_number() over (partition by row_no order by match_probability desc, student_key) as rank
            from (
                select case when source_dataset_l = 'incoming' then unique_id_l else unique_id_r end as row_no,
                       case when source_dataset_l = 'incoming' then unique_id_r else unique_id_l end as student_key,
                       match_probability, match_weight
                from predictions
            )
            qualify rank <= {int(keep)}
            order by row_no, rank
        ) to '{out_path}' (format parquet)
    """)
    timings["predict"] = time.perf_counter() - step
    timings["total"] = time.perf_counter() - start
    return {"ids_compared": ids, **{k: round(v, 2) for k, v in timings.items()}}


def main() -> None:
    """Link INCOMING to EXISTING with Splink and write the ranked candidates to OUT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("incoming")
    parser.add_argument("existing")
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random sampling for u")
    parser.add_argument("--floor", type=float, default=0.001, help="lowest match probability written")
    parser.add_argument("--keep", type=int, default=10, help="candidates written per incoming row")
    parser.add_argument("--max-pairs-u", type=float, default=1e6,
                        help="random pairs sampled to estimate u (Splink's examples use 1e6 to 1e7)")
    parser.add_argument("--names-model", choices=["separate", "combined"], default="separate")
    args = parser.parse_args()
    print(json.dumps(link(args.incoming, args.existing, args.out, args.seed, args.floor, args.keep,
                          args.max_pairs_u, args.names_model)), flush=True)


if __name__ == "__main__":
    main()
