"""The compiled extension must be built wherever the tests run (make test builds it): its absence is a
failure here, not a quiet fallback that would skip every cpp test."""
import os

import pytest
import torch

from lit_align.ops import extension_loaded, resolve_backend


def test_extension_is_built():
    if os.environ.get("LIT_ALIGN_ALLOW_NO_EXTENSION") == "1":
        pytest.skip("LIT_ALIGN_ALLOW_NO_EXTENSION=1")
    assert extension_loaded(), "lit_align._C did not load: run `make test` (it builds the extension)"


def test_auto_picks_cpp_on_cpu():
    if not extension_loaded():
        pytest.skip("no extension: covered by test_extension_is_built")
    for op in ("token_logprobs", "linear_token_logprobs", "sequence_logprobs", "preference_loss"):
        assert resolve_backend("auto", op, torch.device("cpu")) == "cpp"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_kernels_registered():
    for op in ("token_logprobs", "linear_token_logprobs", "sequence_logprobs", "preference_loss"):
        assert resolve_backend("cuda", op, torch.device("cuda")) == "cuda"
