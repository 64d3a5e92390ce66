"""`make bench`: every benchmark at its default size."""

from benchmarks import pipeline

if __name__ == "__main__":
    pipeline.main()
