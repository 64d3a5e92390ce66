"""`make bench`: every benchmark at its default size, and the migration of 100,000 rows against
their registered students (`python -m benchmarks.pipeline --migration-rows N` runs it at any size;
at 1M rows the matcher alone takes minutes and GBs)."""

from benchmarks import approve, cli_startup, ingest, matching_quality, matching_speed, pipeline

if __name__ == "__main__":
    cli_startup.main()
    ingest.main([])
    pipeline.main([])
    pipeline.main(["--migration-rows", "100000"])
    approve.main()
    matching_quality.main()
    matching_speed.main()
