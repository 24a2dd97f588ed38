"""Output files of a run: one module per format, each writing and reading it; ``files`` writes them as a set."""
