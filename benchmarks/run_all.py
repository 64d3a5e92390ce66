"""`make bench`: every benchmark at its default size."""

from benchmarks import approve, ingest, matching_quality, matching_speed, pipeline

if __name__ == "__main__":
    pipeline.main()
    approve.main()
    ingest.main()
    matching_quality.main()
    matching_speed.main()
