"""Matching quality on generated districts with ground truth.

    python -m benchmarks.matching_quality [--sizes 5000 50000] [--seeds 1 2 3] [--names census small]

Districts come from benchmarks/districts.py (Census name frequencies, twins, siblings, nicknames,
typos, swapped names, stripped accents, typo-like birth dates, leavers, newcomers, returning
students). Reports, per size and seed: precision of automatic links, recall (true matches linked
automatically or in review with the right candidate), review rate, blocking recall, students that
would be wrongly removed, and the matching time.
"""

from __future__ import annotations

import argparse
import json
import time


from benchmarks.districts import generate
from benchmarks.holdout import generate_holdout
from tasks.matching import MatchConfig, candidate_pairs, match_rows, prepare


def evaluate(size: int, seed: int, config: MatchConfig, names: str = "census", generator: str = "districts") -> dict:
    """Match one generated district and score the decisions against the truth."""
    if generator == "districts":
        incoming, existing, truth = generate(size, seed, names)
    else:  # benchmarks/holdout.py, written apart from the matcher; "holdout-no-ids" has every ID blank
        incoming, existing, truth = generate_holdout(size, seed, with_ids=generator == "holdout")
    start = time.perf_counter()
    decisions = match_rows(incoming, existing, config)
    seconds = time.perf_counter() - start
    rows = decisions.to_dicts()
    auto = [r for r in rows if r["decision"] == "matched"]
    correct_auto = sum(1 for r in auto if truth[r["row_no"]] == r["student_key"])
    true_rows = [r for r in rows if truth[r["row_no"]] is not None]
    found = sum(1 for r in true_rows if (r["decision"] == "matched" and r["student_key"] == truth[r["row_no"]])
                or (r["decision"] == "review" and truth[r["row_no"]] in {c["student_key"] for c in r["candidates"]}))
    # A present student is wrongly removed when neither an automatic link nor a review candidate
    # leads back to them (a reviewer cannot pick who is not offered).
    kept = {r["student_key"] for r in auto} | {c["student_key"] for r in rows if r["decision"] == "review"
                                               for c in r["candidates"]}
    present = {k for k in truth.values() if k is not None}
    pairs = candidate_pairs(prepare(incoming), prepare(existing), config.blocking_passes)
    true_pairs = {(r, k) for r, k in truth.items() if k is not None}
    blocked = {(r, k) for r, k in pairs.iter_rows()} & true_pairs
    return {
        "names": names, "size": size, "seed": seed, "rows": len(rows), "seconds": round(seconds, 2),
        "auto_precision": round(correct_auto / len(auto), 5) if auto else None,
        "wrong_auto_links": len(auto) - correct_auto,
        "recall": round(found / len(true_rows), 5),
        "review_rate": round(sum(r["decision"] == "review" for r in rows) / len(rows), 4),
        "blocking_recall": round(len(blocked) / len(true_pairs), 4),
        "wrongly_removed": len(present - kept),
    }


def main() -> None:
    """Run the quality benchmark and print one JSON line per size and seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--names", nargs="+", default=["census"], choices=["census", "small"],
                        help="name pools: realistic Census frequencies, or a small pool where names collide a lot")
    parser.add_argument("--generator", default="districts", choices=["districts", "holdout", "holdout-no-ids"],
                        help="benchmarks/districts.py, or the independently written benchmarks/holdout.py")
    args = parser.parse_args()
    for names in args.names:
        for size in args.sizes:
            for seed in args.seeds:
                result = evaluate(size, seed, MatchConfig(), names, args.generator)
                print(json.dumps({"generator": args.generator, **result}), flush=True)


if __name__ == "__main__":
    main()
