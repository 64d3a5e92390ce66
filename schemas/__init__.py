"""Data contracts, one pandera DataFrameModel per stage."""

from schemas.roster import (
    CANONICAL_COLUMNS,
    REQUIRED_COLUMNS,
    MatchDecisionRow,
    StagedRosterRow,
    ValidRosterRow,
)

__all__ = [
    "CANONICAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "MatchDecisionRow",
    "StagedRosterRow",
    "ValidRosterRow",
]
