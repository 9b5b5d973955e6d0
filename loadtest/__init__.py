"""Load generation, benchmarks and their reports."""
