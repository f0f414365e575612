"""Benchmarks whose figures go into docs/BENCHMARKS.md (scripts, never timed tests)."""
