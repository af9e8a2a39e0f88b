"""Microbenchmarks (bench_*.py); a package so that tests can import them."""
