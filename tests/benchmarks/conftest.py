"""Shared by the benchmark tests: torch on one thread while each test runs."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny benchmarks on a busy 2-core machine: with 2 threads each parallel region can wait a scheduler slice."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
