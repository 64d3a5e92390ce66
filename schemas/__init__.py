"""Data contracts: the roster columns (``schemas.columns``) and one pandera DataFrameModel per
stage (``schemas.roster``)."""
