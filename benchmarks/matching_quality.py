"""Matching quality on generated districts with ground truth.

    python -m benchmarks.matching_quality [--sizes 5000 50000] [--seeds 1 2 3] [--names census small]
        [--noise default noisy] [--ids with without | --no-ids] [--peer splink splink-fullname] [--why]

Districts come from benchmarks/districts.py (Census name frequencies, twins, siblings, nicknames,
typos, swapped names, stripped accents, typo-like birth dates, leavers, newcomers, returning
students; ``--noise noisy`` adds missing names, IDs a keystroke or two off, replaced first names,
swapped names with a typo, digit swaps across date fields). ``--no-ids`` empties every ID column on
both sides. Reports, per case: precision of automatic links, recall (true matches linked
automatically, and linked or in review with the right candidate), review rate, blocking recall,
students that would be wrongly removed, and the matching time: one JSON line per case and matcher on
stdout, and a side-by-side table on stderr.

``--peer splink splink-fullname`` also links the same district with Splink (benchmarks/peer_splink.py,
run as a subprocess in the separate environment ``.venv-peer`` that ``make bench-peer-env`` creates),
with the model of its febrl4 example (a comparison per name) and of its 50k-persons example (one
forename-surname comparison), and turns its match probabilities into decisions with the thresholds
below (``peer_decisions``). A peer's seconds are its load, training and prediction, not the start of
its Python (``timings.wall`` in the JSON has that too); rosterflow's are ``match_rows``.
``--why`` breaks the misses and review questions down by the noise each row got.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import polars as pl

from benchmarks.districts import NOISE_LEVELS, District, generate_district, without_ids
from benchmarks.holdout import generate_holdout
from tasks.matching import MatchConfig, candidate_pairs, match_rows, prepare

PEER_PYTHON = Path(__file__).resolve().parent.parent / ".venv-peer" / "bin" / "python"
PEER_SCRIPT = Path(__file__).resolve().parent / "peer_splink.py"

# Splink's probabilities to decisions. A row is linked automatically when its best candidate is
# near-certain (p >= 0.99; Splink's own examples cluster at 0.95-0.99) and clearly above the second:
# its match weight at least 5 higher (32 times as likely), the same shape as rosterflow's score and
# margin. (A rule on the second's probability alone, p2 < 0.5, sent every twin to review: a twin has
# the surname, the birth date and an ID one digit off, p about 0.9 beside the true student's 1.0.)
# Otherwise the row goes to review when its best candidate has p >= 0.2, and the reviewer is shown
# every candidate with p >= 0.05, at most as many as rosterflow shows (MatchConfig.max_candidates).
# Below that the row is new. As in rosterflow, two rows linked automatically to one student both go
# to review (one-to-one).
PEER_AUTO = 0.99
PEER_MARGIN_WEIGHT = 5.0
PEER_REVIEW = 0.2
PEER_CANDIDATE = 0.05
# The peers: Splink with the model of its febrl4 example (a comparison per name) or of its 50k-persons
# example (one forename-surname comparison, where swapped names are a level of their own).
PEERS = {"splink": "separate", "splink-fullname": "combined"}


def peer_decisions(candidates: pl.DataFrame, row_nos: list[int], max_candidates: int) -> list[dict]:
    """Decisions in match_rows' shape (``row_no, decision, student_key, candidates``) from a peer's
    ranked ``row_no, student_key, match_probability, match_weight`` candidates."""
    by_row: dict[int, list[dict]] = {}
    for c in candidates.sort(["row_no", "match_probability"], descending=[False, True]).iter_rows(named=True):
        by_row.setdefault(c["row_no"], []).append(c)
    rows = []
    for row_no in row_nos:
        ranked = by_row.get(row_no, [])
        best = ranked[0]["match_probability"] if ranked else 0.0
        clear = len(ranked) < 2 or ranked[0]["match_weight"] - ranked[1]["match_weight"] >= PEER_MARGIN_WEIGHT
        shown = [{"student_key": c["student_key"], "score": c["match_probability"]}
                 for c in ranked if c["match_probability"] >= PEER_CANDIDATE][:max_candidates]
        if best >= PEER_AUTO and clear:
            rows.append({"row_no": row_no, "decision": "matched", "student_key": ranked[0]["student_key"],
                         "candidates": shown})
        elif best >= PEER_REVIEW:
            rows.append({"row_no": row_no, "decision": "review", "student_key": None, "candidates": shown})
        else:
            rows.append({"row_no": row_no, "decision": "new", "student_key": None, "candidates": []})
    claims = Counter(r["student_key"] for r in rows if r["decision"] == "matched")
    for r in rows:
        if r["decision"] == "matched" and claims[r["student_key"]] > 1:
            r["decision"], r["student_key"] = "review", None
    return rows


def outcome(row: dict, truth: int | None) -> str:
    """What became of one row: 'linked' (the right student, automatically), 'wrong' (automatically,
    to someone else), 'review' (with the right student among the candidates, or a newcomer asked
    about), 'review_missed' (asked, but the right student is not offered), 'new' (taken as new)."""
    if row["decision"] == "matched":
        return "linked" if row["student_key"] == truth else "wrong"
    if row["decision"] == "review":
        if truth is None or truth in {c["student_key"] for c in row["candidates"]}:
            return "review"
        return "review_missed"
    return "new"


def score(rows: list[dict], truth: dict[int, int | None]) -> dict:
    """Precision, recalls, review rate and wrongly removed students of one matcher's decisions."""
    auto = [r for r in rows if r["decision"] == "matched"]
    correct_auto = sum(1 for r in auto if truth[r["row_no"]] == r["student_key"])
    true_rows = [r for r in rows if truth[r["row_no"]] is not None]
    outcomes = Counter(outcome(r, truth[r["row_no"]]) for r in true_rows)
    # A present student is wrongly removed when neither an automatic link nor a review candidate
    # leads back to them (a reviewer cannot pick who is not offered).
    kept = {r["student_key"] for r in auto} | {c["student_key"] for r in rows if r["decision"] == "review"
                                               for c in r["candidates"]}
    present = {k for k in truth.values() if k is not None}
    return {
        "auto_precision": round(correct_auto / len(auto), 5) if auto else None,
        "wrong_auto_links": len(auto) - correct_auto,
        "recall_auto": round(outcomes["linked"] / len(true_rows), 5),
        "recall": round((outcomes["linked"] + outcomes["review"]) / len(true_rows), 5),
        "review_rate": round(sum(r["decision"] == "review" for r in rows) / len(rows), 4),
        "wrongly_removed": len(present - kept),
    }


def run_peer(incoming: pl.DataFrame, existing: pl.DataFrame, seed: int, ids: bool,
             names_model: str = "separate") -> tuple[pl.DataFrame, dict]:
    """Splink's ranked candidates for the district, from the subprocess in the peer environment, and
    its timings (``wall`` includes starting Python and importing Splink)."""
    if not PEER_PYTHON.exists():
        sys.exit(f"{PEER_PYTHON} does not exist: run `make bench-peer-env` first (it installs Splink in its "
                 "own environment, apart from the project's pinned packages)")
    person = ["first_name", "last_name", "date_of_birth"] + (["student_id", "ssid", "other_id"] if ids else [])
    with tempfile.TemporaryDirectory(prefix="rosterflow-peer-") as folder:
        paths = [Path(folder) / name for name in ("incoming.parquet", "existing.parquet", "candidates.parquet")]
        incoming.select("row_no", *person).write_parquet(paths[0])
        existing.select("student_key", *person).write_parquet(paths[1])
        start = time.perf_counter()
        done = subprocess.run([str(PEER_PYTHON), str(PEER_SCRIPT), *map(str, paths), "--seed", str(seed),
                               "--names-model", names_model],
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"the Splink peer failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        timings = json.loads(done.stdout.strip().splitlines()[-1])
        return pl.read_parquet(paths[2]), {**timings, "wall": round(wall, 2)}


def evaluate_case(size: int, seed: int, config: MatchConfig, names: str = "census", noise: str = "default",
                  ids: bool = True, peers: list[str] = ()) -> tuple[list[dict], dict[str, list[dict]], District]:
    """Match one generated district with rosterflow (and each peer, on the same data); returns one
    result per matcher, each matcher's decisions, and the district."""
    if noise == "holdout":  # benchmarks/holdout.py, written apart from the matcher and its generator
        incoming, existing, truth = generate_holdout(size, seed)
        district = District(incoming, existing, truth, {row_no: ["holdout"] for row_no in truth})
    else:
        district = generate_district(size, seed, names, noise)
    incoming, existing, truth = district.incoming, district.existing, district.truth
    if not ids:
        incoming, existing = without_ids(incoming), without_ids(existing)
    case = {"names": names, "noise": noise, "ids": ids, "size": size, "seed": seed}
    start = time.perf_counter()
    decisions = match_rows(incoming, existing, config)
    seconds = time.perf_counter() - start
    rows = decisions.select("row_no", "decision", "student_key", "candidates").to_dicts()
    pairs = candidate_pairs(prepare(incoming), prepare(existing), config.blocking_passes)
    true_pairs = {(r, k) for r, k in truth.items() if k is not None}
    blocked = {(r, k) for r, k in pairs.iter_rows()} & true_pairs
    results = [{"matcher": "rosterflow", **case, "rows": len(rows), "seconds": round(seconds, 2),
                **score(rows, truth), "blocking_recall": round(len(blocked) / len(true_pairs), 4)}]
    decided = {"rosterflow": rows}
    for peer in peers:
        candidates, timings = run_peer(incoming, existing, seed, ids, PEERS[peer])
        peer_rows = peer_decisions(candidates, incoming["row_no"].to_list(), config.max_candidates)
        # Blocking recall of the peer: true pairs among the candidates it wrote (p >= its floor).
        written = set(candidates.select("row_no", "student_key").iter_rows()) & true_pairs
        results.append({"matcher": peer, **case, "rows": len(peer_rows), "seconds": timings["total"],
                        **score(peer_rows, truth), "blocking_recall": round(len(written) / len(true_pairs), 4),
                        "timings": timings})
        decided[peer] = peer_rows
    return results, decided, district


ID_NOISE = ("id_missing", "id_typo", "id_edit")


def why(decided: dict[str, list[dict]], district: District, ids: bool = True) -> dict[str, dict[str, Counter]]:
    """Per noise kind, per matcher: how many rows carrying it ended in each outcome (without IDs, the
    IDs' noise is no noise)."""
    table: dict[str, dict[str, Counter]] = {}
    for matcher, rows in decided.items():
        for r in rows:
            kinds = [k for k in district.noise[r["row_no"]] if ids or k not in ID_NOISE]
            several = len([k for k in kinds if k != "returning"]) > 1
            labels = (kinds or ["clean"]) + (["(two or more)"] if several else [])
            result = outcome(r, district.truth[r["row_no"]])
            for label in labels:
                table.setdefault(label, {}).setdefault(matcher, Counter())[result] += 1
    return table


COLUMNS = [("auto_precision", "auto prec", "{:.4f}"), ("recall_auto", "recall auto", "{:.4f}"),
           ("recall", "recall+review", "{:.4f}"), ("review_rate", "review", "{:.1%}"),
           ("wrong_auto_links", "wrong links", "{}"), ("wrongly_removed", "wrongly removed", "{}"),
           ("blocking_recall", "blocking", "{:.4f}"), ("seconds", "seconds", "{:.1f}")]


def table(results: list[dict]) -> str:
    """The results side by side, one line per case and matcher."""
    head = ["names", "noise", "ids", "size", "seed", "matcher"] + [title for _, title, _ in COLUMNS]
    lines = [[str(r["names"]), r["noise"], "with" if r["ids"] else "without", str(r["size"]), str(r["seed"]),
              r["matcher"]] + [("-" if r[key] is None else form.format(r[key])) for key, _, form in COLUMNS]
             for r in results]
    widths = [max(len(x) for x in column) for column in zip(head, *lines)]
    return "\n".join(" | ".join(x.ljust(w) for x, w in zip(line, widths)) for line in [head, *lines])


def why_table(totals: dict[str, dict[str, Counter]], matchers: list[str]) -> str:
    """Per noise kind: rows, then per matcher 'missed / review / wrong': rows missed (taken as new,
    asked without the right student, or linked to someone else; for newcomers: linked to someone),
    asked in review, and linked to someone else."""
    head = ["noise", "rows"] + [f"{m} missed/review/wrong" for m in matchers]
    lines = []
    for label in sorted(totals, key=lambda k: (k.startswith("newcomer"), k)):
        per = totals[label]
        line = [label, str(sum(per[matchers[0]].values()))]
        for m in matchers:
            c = per.get(m, Counter())
            missed = c["wrong"] if label.startswith("newcomer") else c["new"] + c["review_missed"] + c["wrong"]
            line.append(f"{missed} / {c['review']} / {c['wrong']}")
        lines.append(line)
    widths = [max(len(x) for x in column) for column in zip(head, *lines)]
    return "\n".join(" | ".join(x.ljust(w) for x, w in zip(line, widths)) for line in [head, *lines])


def main() -> None:
    """Run the quality benchmark: one JSON line per case and matcher, then the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--names", nargs="+", default=["census"], choices=["census", "small"],
                        help="name pools: realistic Census frequencies, or a small pool where names collide a lot")
    parser.add_argument("--noise", nargs="+", default=["default"], choices=[*NOISE_LEVELS, "holdout"],
                        help="the generator's noise: today's, 'noisy' with the harder errors on top, or 'holdout' (benchmarks/holdout.py, an independently written generator)")
    parser.add_argument("--ids", nargs="+", default=["with"], choices=["with", "without"],
                        help="'without': every ID column emptied on both sides")
    parser.add_argument("--no-ids", dest="ids", action="store_const", const=["without"],
                        help="same as --ids without")
    parser.add_argument("--peer", nargs="+", default=[], choices=sorted(PEERS),
                        help="also link each district with these peers, side by side: Splink with a comparison "
                             "per name, or with one forename-surname comparison (swapped names a level)")
    parser.add_argument("--why", action="store_true",
                        help="break misses and review questions down by the noise each row got")
    args = parser.parse_args()
    results, totals = [], {}
    for names in args.names:
        for noise in args.noise:
            for ids in args.ids:
                for size in args.sizes:
                    for seed in args.seeds:
                        case, decided, district = evaluate_case(size, seed, MatchConfig(), names, noise,
                                                                ids == "with", args.peer)
                        for result in case:
                            print(json.dumps(result), flush=True)
                        results += case
                        if args.why:
                            for label, per in why(decided, district, ids == "with").items():
                                for matcher, counts in per.items():
                                    totals.setdefault((noise, ids), {}).setdefault(label, {}).setdefault(
                                        matcher, Counter()).update(counts)
    print("\n" + table(results), file=sys.stderr)
    matchers = ["rosterflow", *args.peer]
    for (noise, ids), per_kind in totals.items():
        print(f"\nWhy, {noise} noise, {ids} IDs (all sizes and seeds summed):\n{why_table(per_kind, matchers)}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
