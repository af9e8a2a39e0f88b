"""Shared by the benchmark tests: torch on one thread (tests/threads.py)."""
from tests.threads import one_thread  # noqa: F401  (autouse, package scope)
