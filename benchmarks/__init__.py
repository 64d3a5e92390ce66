"""Benchmarks, run on demand (`make bench`); they report numbers, they do not pass or fail."""
