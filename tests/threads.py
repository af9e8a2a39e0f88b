"""One torch thread for a test package: the tiny models gain nothing from two threads on a busy 2-core machine (each
parallel region can wait a scheduler slice), and a test in this process then computes bitwise what a subprocess with
OMP_NUM_THREADS=1 computes. A package's conftest imports `one_thread` to turn it on (autouse, package scope)."""
import pytest


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
