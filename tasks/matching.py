"""The matcher: one decision per incoming row against existing students.

Rules run as ordered levels, like a record-linkage comparison ladder:
1. exact identifiers (student ID, then SSID, then other ID) decide, unless the name and date of
   birth clearly belong to someone else;
2. definite-no: a date of birth that disagrees beyond a typo pattern rules a candidate out;
3. fuzzy scoring of names and date of birth, only inside blocks, over several blocking passes so
   that one typo does not hide a match.
Automatic links are refused when two candidates are close, when a twin or sibling shares the
last name and date of birth, or when one student is claimed by two rows: those rows go to review.
"""

from __future__ import annotations

import datetime as dt
import functools
import unicodedata

import polars as pl
from nicknames import NickNamer
from pydantic import BaseModel, Field
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, JaroWinkler


class MatchConfig(BaseModel):
    """Thresholds and rules of the matcher; every number here is a setting, not a constant."""

    id_levels: list[str] = Field(
        default=["student_id", "ssid", "other_id"],
        description="Identifier columns tried in order; the first that finds a student decides.",
    )
    id_name_floor: float = Field(
        default=60, ge=0, le=100,
        description="An ID match whose name scores below this and whose date of birth disagrees goes to review.",
    )
    auto_link_score: float = Field(
        default=92, ge=50, le=100, description="Fuzzy score needed to link a row automatically."
    )
    review_score: float = Field(
        default=70, ge=0, le=100, description="Candidates scoring at least this are shown to a reviewer."
    )
    min_margin: float = Field(
        default=6, ge=0, le=50,
        description="The best candidate must beat the second by this much to be linked automatically.",
    )
    dob_typo_penalty: float = Field(default=8, ge=0, le=50, description="Score cost of a typo-like date of birth.")
    dob_missing_penalty: float = Field(default=12, ge=0, le=50, description="Score cost of a missing date of birth.")
    max_candidates: int = Field(default=3, ge=1, le=10, description="Candidates kept for a reviewer.")
    blocking_passes: list[str] = Field(
        default=["birth_date", "last_prefix_birth_year", "full_name", "first_prefix_birth_date", "name_tokens"],
        description="Blocking rules, each a way two records may meet for fuzzy scoring.",
    )


_NICKNAMES = NickNamer()


def fold_name(text: str | None) -> str:
    """Accent-folded, lower-case, letters-only form of a name, for comparison only."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    letters = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    cleaned = "".join(ch if ch.isalpha() else " " for ch in letters.lower())
    return " ".join(cleaned.split())


@functools.lru_cache(maxsize=65536)
def nickname_equivalent(first_a: str, first_b: str) -> bool:
    """True when two folded first names are the same person's name by a nickname table."""
    if not first_a or not first_b:
        return False
    if first_a == first_b:
        return True
    if first_b in _NICKNAMES.nicknames_of(first_a) or first_a in _NICKNAMES.nicknames_of(first_b):
        return True
    canon_a = _NICKNAMES.canonicals_of(first_a) | {first_a}
    canon_b = _NICKNAMES.canonicals_of(first_b) | {first_b}
    return bool(canon_a & canon_b)


def dob_agreement(incoming: dt.date | None, existing: dt.date | None) -> str:
    """'exact', 'typo' (day/month swapped or one digit off), 'missing' or 'different'."""
    if incoming is None or existing is None:
        return "missing"
    if incoming == existing:
        return "exact"
    if (incoming.year, incoming.month, incoming.day) == (existing.year, existing.day, existing.month):
        return "typo"
    a, b = incoming.strftime("%Y%m%d"), existing.strftime("%Y%m%d")
    if sum(x != y for x, y in zip(a, b)) == 1:
        return "typo"
    return "different"


def name_agreement(first_in: str, last_in: str, first_ex: str, last_ex: str) -> tuple[float, str]:
    """Name score 0-100 and a short explanation, coping with nicknames, swaps and double surnames."""
    # Jaro-Winkler forgives the transpositions and dropped letters typical of typed names.
    first_score = 100.0 if nickname_equivalent(first_in, first_ex) else 100 * JaroWinkler.normalized_similarity(first_in, first_ex)
    last_score = 100 * JaroWinkler.normalized_similarity(last_in, last_ex)
    if last_in and last_ex and (set(last_in.split()) & set(last_ex.split())):
        last_score = max(last_score, 95.0)  # one part of a double/hyphenated surname kept
    straight = (first_score + last_score) / 2
    swapped = fuzz.token_sort_ratio(f"{first_in} {last_in}", f"{first_ex} {last_ex}")
    if swapped > straight + 10 and swapped >= 95:
        return swapped - 2, "first and last names swapped"
    parts = []
    parts.append("first equal" if first_in == first_ex else
                 "first nickname" if first_score == 100 else f"first {first_score:.0f}")
    parts.append("last equal" if last_in == last_ex else f"last {last_score:.0f}")
    return straight, ", ".join(parts)


def _prepare(frame: pl.DataFrame) -> pl.DataFrame:
    folded = frame.with_columns(
        pl.col("first_name").map_elements(fold_name, return_dtype=pl.String).alias("first_key"),
        pl.col("last_name").map_elements(fold_name, return_dtype=pl.String).alias("last_key"),
    )
    return folded.with_columns(
        birth_year=pl.col("date_of_birth").dt.year(),
        last_prefix=pl.col("last_key").str.slice(0, 2),
        first_prefix=pl.col("first_key").str.slice(0, 1),
        full_key=pl.concat_str(["first_key", "last_key"], separator=" "),
        person_key=person_key_expr(),
        # The name's words in order, so swapped first and last names meet in one block.
        name_tokens=pl.concat_str(["first_key", "last_key"], separator=" ").str.split(" ").list.sort().list.join(" "),
    )


def person_key_expr() -> pl.Expr:
    """Who a row is within one batch: its first identifier, else folded name and date of birth."""
    return pl.coalesce(
        pl.concat_str(pl.lit("id:"), pl.col("student_id")),
        pl.concat_str(pl.lit("ssid:"), pl.col("ssid")),
        pl.concat_str(pl.lit("other:"), pl.col("other_id")),
        pl.concat_str(pl.lit("name:"), pl.col("first_key"), pl.lit("|"), pl.col("last_key"), pl.lit("|"),
                      pl.col("date_of_birth").cast(pl.String).fill_null("")),
    )


BLOCKING_RULES: dict[str, list[str]] = {
    "birth_date": ["date_of_birth"],
    "name_tokens": ["name_tokens"],
    "last_prefix_birth_year": ["last_prefix", "birth_year"],
    "full_name": ["full_key"],
    "first_prefix_birth_date": ["first_prefix", "date_of_birth"],
}


def candidate_pairs(incoming: pl.DataFrame, existing: pl.DataFrame, passes: list[str]) -> pl.DataFrame:
    """Distinct (row_no, student_key) pairs that meet in at least one blocking pass."""
    pairs = []
    for name in passes:
        keys = BLOCKING_RULES[name]
        left = incoming.select("row_no", *keys).drop_nulls(keys)
        right = existing.select("student_key", *keys).drop_nulls(keys)
        pairs.append(left.join(right, on=keys, how="inner").select("row_no", "student_key"))
    if not pairs:
        return pl.DataFrame(schema={"row_no": pl.Int64, "student_key": pl.Int64})
    return pl.concat(pairs).unique()


def first_names_agree(first_in: str, first_ex: str) -> bool:
    """Equal or nickname-equivalent first names: the only first-name difference an automatic link
    accepts (Daniel/Danielle, Ana/Ava and Mario/Maria are one or two letters apart and different
    children)."""
    return nickname_equivalent(first_in, first_ex)


def last_names_agree(last_in: str, last_ex: str) -> bool:
    """Equal, one typing slip apart (Nguyen/Nguyne), or sharing a part of a double surname."""
    if not last_in or not last_ex:
        return False
    return (last_in == last_ex or OSA.distance(last_in, last_ex) <= 1
            or bool(set(last_in.split()) & set(last_ex.split())))


def ids_conflict(row: dict, suffix_in: str = "_in", suffix_ex: str = "_ex") -> str | None:
    """The identifier both records carry with different values, if any (a definite-no for linking)."""
    for column in ("student_id", "ssid", "other_id"):
        a, b = row.get(column + suffix_in), row.get(column + suffix_ex)
        if a is not None and b is not None and a != b:
            return column
    return None


def score_pairs(pairs: pl.DataFrame, incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig) -> pl.DataFrame:
    """Score each candidate pair; drop definite non-matches (date of birth clearly different).

    Besides the score, each pair says whether it could be linked automatically at all:
    ``names_agree`` (first names equal or nicknames and last names equal or one slip apart, or the
    same names swapped) and ``id_conflict`` (an identifier both carry, with different values).
    """
    id_columns = ["student_id", "ssid", "other_id"]
    joined = pairs.join(
        incoming.select("row_no", "first_key", "last_key", pl.col("date_of_birth").alias("dob_in"),
                        *[pl.col(c).alias(f"{c}_in") for c in id_columns]), on="row_no"
    ).join(
        existing.select("student_key", pl.col("first_key").alias("first_ex"), pl.col("last_key").alias("last_ex"),
                        pl.col("date_of_birth").alias("dob_ex"), *[pl.col(c).alias(f"{c}_ex") for c in id_columns]),
        on="student_key",
    )
    scores, agreements, dobs, exact_names, names_agree, conflicts = [], [], [], [], [], []
    for row in joined.iter_rows(named=True):
        first_in, last_in, first_ex, last_ex = row["first_key"], row["last_key"], row["first_ex"], row["last_ex"]
        name_score, name_text = name_agreement(first_in, last_in, first_ex, last_ex)
        dob = dob_agreement(row["dob_in"], row["dob_ex"])
        conflict = ids_conflict(row)
        penalty = {"exact": 0.0, "typo": config.dob_typo_penalty, "missing": config.dob_missing_penalty}.get(dob)
        scores.append(None if penalty is None else max(name_score - penalty, 0.0))
        agreements.append(f"{name_text}; date of birth {dob}" + (f"; {conflict} differs" if conflict else ""))
        dobs.append(dob)
        exact = sorted(f"{first_in} {last_in}".split()) == sorted(f"{first_ex} {last_ex}".split())
        exact_names.append(exact)
        names_agree.append(exact or (first_names_agree(first_in, first_ex) and last_names_agree(last_in, last_ex)))
        conflicts.append(conflict)
    return joined.with_columns(
        exact_name=pl.Series(exact_names, dtype=pl.Boolean),
        names_agree=pl.Series(names_agree, dtype=pl.Boolean),
        id_conflict=pl.Series(conflicts, dtype=pl.String),
        score=pl.Series(scores, dtype=pl.Float64),
        agreement=pl.Series(agreements, dtype=pl.String),
        dob=pl.Series(dobs, dtype=pl.String),
    ).filter(pl.col("score").is_not_null())


def match_rows(incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig | None = None) -> pl.DataFrame:
    """Decide, for every incoming row, whether it is an existing student, a new one, or a question.

    ``incoming`` has ``row_no, first_name, last_name, date_of_birth, student_id, ssid, other_id``;
    ``existing`` has ``student_key`` and the same person columns. Any may be null.
    Returns one row per incoming row: ``row_no, decision ('matched' | 'review' | 'new'),
    student_key, rule, score, explanation, candidates`` (a list of ``student_key, score, agreement``).
    """
    config = config or MatchConfig()
    incoming = _prepare(incoming)
    existing = _prepare(existing)
    decided: dict[int, dict] = {}
    candidate_lists: dict[int, list[dict]] = {}

    # Level 1: exact identifiers.
    existing_by_key = {row["student_key"]: row for row in existing.iter_rows(named=True)}
    incoming_by_row = {row["row_no"]: row for row in incoming.iter_rows(named=True)}
    for level in config.id_levels:
        left = incoming.filter(pl.col(level).is_not_null() & ~pl.col("row_no").is_in(list(decided)))
        right = existing.filter(pl.col(level).is_not_null())
        hits = left.select("row_no", level).join(right.select("student_key", level), on=level)
        for row_no, group in hits.group_by("row_no"):
            row_no = row_no[0]
            row = incoming_by_row[row_no]
            keys = group["student_key"].to_list()
            scored = []
            for key in keys:
                ex = existing_by_key[key]
                name_score, name_text = name_agreement(row["first_key"], row["last_key"], ex["first_key"], ex["last_key"])
                dob = dob_agreement(row["date_of_birth"], ex["date_of_birth"])
                scored.append({"student_key": key, "score": name_score,
                               "agreement": f"{level} equal; {name_text}; date of birth {dob}", "dob": dob})
            candidate_lists[row_no] = scored
            if len(keys) > 1:
                decided[row_no] = _decision(row_no, "review", None, level, None,
                                            f"{level} {row[level]} belongs to {len(keys)} existing students")
                continue
            best = scored[0]
            ex = existing_by_key[best["student_key"]]
            other_conflict = ids_conflict({**{f"{c}_in": row[c] for c in ("student_id", "ssid", "other_id")},
                                           **{f"{c}_ex": ex[c] for c in ("student_id", "ssid", "other_id")}})
            if best["score"] < config.id_name_floor and best["dob"] != "exact":
                # An ID alone does not outweigh a different name without a matching birth date:
                # IDs get mistyped, and a wrong link merges two children.
                decided[row_no] = _decision(row_no, "review", None, level, best["score"],
                                            f"{level} equal but the name and date of birth do not confirm it ({best['agreement']})")
            elif other_conflict:
                decided[row_no] = _decision(row_no, "review", None, level, best["score"],
                                            f"{level} equal but {other_conflict} differs ({best['agreement']})")
            else:
                decided[row_no] = _decision(row_no, "matched", best["student_key"], level, 100.0, best["agreement"])

    # Levels 2-3: blocked fuzzy scoring with the definite-no rule on date of birth. Rows an ID sent
    # to review are scored too: a mistyped ID often hits another child, and the reviewer needs the
    # student the name and birth date point to beside the one the ID points to.
    id_reviews = {r for r, d in decided.items() if d["decision"] == "review"}
    remaining = incoming.filter(~pl.col("row_no").is_in([r for r in decided if r not in id_reviews]))
    pairs = candidate_pairs(remaining, existing, config.blocking_passes)
    scored = score_pairs(pairs, remaining, existing, config).filter(pl.col("score") >= config.review_score)
    # Ties broken by student key, so the same input always offers the same candidates.
    scored = scored.sort(["row_no", "score", "student_key"], descending=[False, True, False])
    twins = existing.group_by("last_key", "date_of_birth").agg(pl.len().alias("sharing")).filter(pl.col("sharing") > 1)
    twin_keys = set(
        existing.join(twins, on=["last_key", "date_of_birth"])["student_key"].to_list()
    )
    for row_no, group in scored.group_by("row_no", maintain_order=True):
        row_no = row_no[0]
        candidates = group.head(config.max_candidates).select(
            "student_key", "score", "agreement", "dob", "exact_name", "names_agree", "id_conflict").to_dicts()
        if row_no in id_reviews:
            offered = {c["student_key"] for c in candidate_lists[row_no]}
            candidate_lists[row_no] += [c for c in candidates if c["student_key"] not in offered]
            continue
        candidate_lists[row_no] = candidates
        best = candidates[0]
        second = candidates[1]["score"] if len(candidates) > 1 else None
        reason = None
        if best["score"] < config.auto_link_score:
            reason = f"best candidate scores {best['score']:.0f}, below the automatic {config.auto_link_score:.0f}"
        elif best["dob"] != "exact":
            reason = f"date of birth {best['dob']}: a fuzzy link needs the same date of birth"
        elif best["id_conflict"]:
            reason = f"the names agree but the {best['id_conflict']} differs"
        elif not best["names_agree"]:
            reason = "the first names differ beyond a nickname, or the last names beyond one typing slip"
        elif second is not None and best["score"] - second < config.min_margin:
            reason = f"two candidates are close ({best['score']:.0f} and {second:.0f})"
        elif best["student_key"] in twin_keys and not best["exact_name"]:
            reason = "a twin or sibling shares the last name and date of birth, and the name is not identical"
        if reason:
            decided[row_no] = _decision(row_no, "review", None, "fuzzy", best["score"], reason)
        else:
            decided[row_no] = _decision(row_no, "matched", best["student_key"], "fuzzy", best["score"], best["agreement"])

    # One student, one row: a student claimed by two rows sends both rows to review.
    # Rows of one person (one row per class) may share a student; rows of two people may not.
    person_of = dict(zip(incoming["row_no"].to_list(), incoming["person_key"].to_list()))
    claims: dict[int, list[int]] = {}
    for row_no, decision in decided.items():
        if decision["decision"] == "matched":
            claims.setdefault(decision["student_key"], []).append(row_no)
    for key, rows in claims.items():
        if len({person_of[r] for r in rows}) > 1:
            for row_no in rows:
                decided[row_no] = _decision(row_no, "review", None, decided[row_no]["rule"], decided[row_no]["score"],
                                            f"student {key} is claimed by {len(rows)} rows")
                candidate_lists.setdefault(row_no, [{"student_key": key, "score": 100.0, "agreement": "claimed by two rows"}])

    rows = []
    for row_no in incoming["row_no"].to_list():
        decision = decided.get(row_no) or _decision(row_no, "new", None, "no candidate", None,
                                                     f"no existing student scores {config.review_score:.0f} or more")
        decision["candidates"] = [
            {"student_key": c["student_key"], "score": float(c["score"]), "agreement": c["agreement"]}
            for c in candidate_lists.get(row_no, [])
        ] if decision["decision"] == "review" else []
        rows.append(decision)
    return pl.DataFrame(
        rows,
        schema={"row_no": pl.Int64, "decision": pl.String, "student_key": pl.Int64, "rule": pl.String,
                "score": pl.Float64, "explanation": pl.String,
                "candidates": pl.List(pl.Struct({"student_key": pl.Int64, "score": pl.Float64, "agreement": pl.String}))},
    )


def _decision(row_no: int, decision: str, student_key: int | None, rule: str, score: float | None, explanation: str) -> dict:
    return {"row_no": row_no, "decision": decision, "student_key": student_key, "rule": rule,
            "score": score, "explanation": explanation}
