"""Tollgate benchmarks: `python -m tollgate_bench` (or `./just bench` / `./just bench-quick`)."""
