"""Batch invariance: a row's results are bitwise the same alone, in a batch of 7 and in a batch of 64.

RL recomputes the log-probs of sampled tokens in batches of another size than the sampler's (verl#6280): they
must not move with the batch. Each test draws fresh random data (the seed is in the failure message), scores a
few subject rows alone, then among 6 other rows and among 63 other rows at shuffled positions (with ignored
rows around them), and compares log-probs and hidden/logit gradients with torch.equal. The cpp and triton
(interpreter) backends run here; CUDA runs the same tests on a GPU machine.
"""
import pytest
import torch

from lit_align.ops import (
    fused_linear_preference_loss,
    linear_token_logprobs,
    preference_loss,
    sequence_logprobs,
    token_logprobs,
)
from tests.ops._cases import DEVICE_BACKENDS, IGNORE, skip_if_missing

SUBJECTS = 3  # rows whose results are compared


def placements(gen: torch.Generator, pool: int) -> list[torch.Tensor]:
    """Index sets into a pool of rows: each subject alone, the subjects among 7 rows, among 64 rows (shuffled).
    Subject k is pool row k; every set lists its rows in batch order."""
    sets = [torch.tensor([k]) for k in range(SUBJECTS)]
    for size in (7, pool):
        others = SUBJECTS + torch.randperm(pool - SUBJECTS, generator=gen)[: size - SUBJECTS]
        sets.append(torch.cat([torch.arange(SUBJECTS), others])[torch.randperm(size, generator=gen)])
    return sets


def assert_rows_equal(results: list[torch.Tensor], sets: list[torch.Tensor], what: str, seed: int) -> None:
    """results[i][j] belongs to pool row sets[i][j]; every pool row's results must be bitwise equal."""
    seen: dict[int, torch.Tensor] = {}
    for result, rows in zip(results, sets, strict=True):
        for position, row in enumerate(rows.tolist()):
            if row in seen:
                assert torch.equal(result[position], seen[row]), \
                    f"{what}: row {row} changed with the batch (seed {seed})"
            else:
                seen[row] = result[position]


@pytest.fixture
def seed():
    return int(torch.randint(0, 2**31 - 1, ()))  # fresh each run: batch invariance must hold for any data


def shape(device_backend: str, cpp: tuple, triton: tuple) -> tuple:
    return triton if device_backend == "triton" else cpp


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logprobs(device, backend, dtype, seed):
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(seed)
    vocab = shape(backend, 3001, 517)
    logits = (torch.randn(64, vocab, generator=gen) * 4).to(dtype).to(device)
    labels = torch.randint(0, vocab, (64,), generator=gen)
    labels[SUBJECTS:][torch.rand(64 - SUBJECTS, generator=gen) < 0.3] = IGNORE
    labels, upstream = labels.to(device), torch.randn(64, generator=gen).to(device)
    sets = placements(gen, 64)
    logprobs, grads = [], []
    for rows in sets:
        x = logits[rows].clone().requires_grad_()
        out = token_logprobs(x, labels[rows], temperature=0.7, backend=backend, batch_invariant=True)
        logprobs.append(out.detach())
        grads.append(torch.autograd.grad((out * upstream[rows]).sum(), x)[0])
    assert_rows_equal(logprobs, sets, "logp", seed)
    assert_rows_equal(grads, sets, "grad_logits", seed)


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_token_logprobs(device, backend, dtype, seed):
    """Log-probs and hidden gradients (and the weight gradient's determinism: the same batch twice)."""
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(seed)
    hdim, vocab = shape(backend, (45, 2100), (24, 1100))  # several vocabulary tiles / splits, odd sizes
    hidden = torch.randn(64, hdim, generator=gen).to(dtype).to(device)
    weight = (torch.randn(vocab, hdim, generator=gen) * 2 / hdim ** 0.5).to(dtype).to(device).requires_grad_()
    bias = torch.randn(vocab, generator=gen).to(dtype).to(device).requires_grad_()
    labels = torch.randint(0, vocab, (64,), generator=gen)
    labels[SUBJECTS:][torch.rand(64 - SUBJECTS, generator=gen) < 0.3] = IGNORE
    labels, upstream = labels.to(device), torch.randn(64, generator=gen).to(device)
    sets = placements(gen, 64)

    def run(rows):
        h = hidden[rows].clone().requires_grad_()
        out = linear_token_logprobs(h, weight, labels[rows], bias=bias, temperature=1.3, backend=backend,
                                    batch_invariant=True)
        return (out.detach(), *torch.autograd.grad((out * upstream[rows]).sum(), (h, weight, bias)))

    results = [run(rows) for rows in sets]
    assert_rows_equal([r[0] for r in results], sets, "logp", seed)
    assert_rows_equal([r[1] for r in results], sets, "grad_hidden", seed)
    again = run(sets[-1])
    assert torch.equal(again[2], results[-1][2]) and torch.equal(again[3], results[-1][3]), \
        f"weight/bias gradients must be deterministic for a given batch (seed {seed})"


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_sequence_logprobs(device, backend, seed):
    """A sequence's sum (and mean) over its kept tokens does not depend on the sequences packed with it."""
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(seed)
    tokens = [torch.randn(int(n), generator=gen) * 3 for n in torch.randint(1, 300, (64,), generator=gen)]
    kept = [torch.rand(t.shape, generator=gen) > 0.2 for t in tokens]  # prompt/padding excluded (id -1)
    sets = placements(gen, 64)
    for reduction in ("sum", "mean"):
        scores, grads = [], []
        for rows in sets:
            values = torch.cat([tokens[r] for r in rows.tolist()]).to(device).requires_grad_()
            ids = torch.cat([torch.where(kept[r], k, -1) for k, r in enumerate(rows.tolist())]).to(device)
            score = sequence_logprobs(values, segment_ids=ids, num_segments=len(rows), reduction=reduction,
                                      backend=backend, batch_invariant=True)
            scores.append(score.detach())
            upstream = (rows + 1).to(device, torch.float32)  # a function of the pool row, not of the position
            grad = torch.autograd.grad((score * upstream).sum(), values)[0]
            grads.append(list(grad.split([len(tokens[r]) for r in rows.tolist()])))
        assert_rows_equal(scores, sets, f"sequence {reduction}", seed)
        assert_rows_equal(grads, sets, f"sequence {reduction} gradient", seed)


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_preference_loss(device, backend, seed):
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(seed)
    pc, pr, rc, rr = (torch.randn(64, generator=gen, dtype=torch.float64) * 30 - 200 for _ in range(4))
    eps = torch.rand(64, generator=gen, dtype=torch.float64) * 0.4
    sets = placements(gen, 64)
    for loss_type in ("sigmoid", "robust", "ipo"):
        losses, grads = [], []
        for rows in sets:
            chosen = pc[rows].float().to(device).requires_grad_()
            smoothing = eps[rows].float().to(device) if loss_type != "ipo" else 0.0
            loss, _, _ = preference_loss(chosen, pr[rows].float().to(device), rc[rows].float().to(device),
                                         rr[rows].float().to(device), beta=0.1, loss_type=loss_type,
                                         label_smoothing=smoothing, backend=backend, batch_invariant=True)
            losses.append(loss.detach())
            grads.append(torch.autograd.grad(loss.sum(), chosen)[0])
        assert_rows_equal(losses, sets, f"{loss_type} loss", seed)
        assert_rows_equal(grads, sets, f"{loss_type} gradient", seed)


def dpo_case(gen: torch.Generator, pairs: int, length: int, hdim: int, vocab: int):
    """Hidden states (2 * pairs, T, H) and labels with a prompt and padding, as a pool of pairs."""
    hidden = torch.randn(2 * pairs, length, hdim, generator=gen)
    labels = torch.randint(0, vocab, (2 * pairs, length), generator=gen)
    prompt = torch.randint(1, length // 2, (2 * pairs, 1), generator=gen)
    end = torch.randint(length // 2 + 1, length + 1, (2 * pairs, 1), generator=gen)
    position = torch.arange(length)
    labels[(position < prompt) | (position >= end)] = IGNORE
    return hidden, labels


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_fused_preference_recompute(device, backend, seed):
    """The end-to-end DPO op: a pair's loss, log-probs and hidden gradient alone, among 7 and among 64 pairs."""
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(seed)
    pool, (length, hdim, vocab) = 64, shape(backend, (9, 40, 700), (5, 16, 97))
    hidden, labels = dpo_case(gen, pool, length, hdim, vocab)
    weight = (torch.randn(vocab, hdim, generator=gen) / hdim ** 0.5).to(device).requires_grad_()
    refs = torch.randn(2 * pool, generator=gen) * 5 - 30
    sets = placements(gen, pool)
    losses, logprobs, grads = [], [], []
    for rows in sets:
        both = torch.cat([rows, rows + pool])  # chosen rows, then their rejected rows
        h = hidden[both].to(device).requires_grad_()
        loss, _, _, chosen, rejected = fused_linear_preference_loss(
            h, weight, labels[both].to(device), ref_chosen=refs[rows].to(device),
            ref_rejected=refs[rows + pool].to(device), beta=0.5, label_smoothing=0.1, return_logprobs=True,
            backend=backend, batch_invariant=True)
        losses.append(loss.detach())
        logprobs.append(torch.stack([chosen, rejected], 1))
        grad = torch.autograd.grad(loss.sum(), h)[0]
        grads.append(torch.stack(grad.chunk(2), 1))  # (pairs, 2, T, H): a pair's two rows together
    assert_rows_equal(losses, sets, "pair loss", seed)
    assert_rows_equal(logprobs, sets, "pair log-probs", seed)
    assert_rows_equal(grads, sets, "pair hidden gradient", seed)


def test_fused_preference_chunked(seed):
    """The Liger-style strategy with one pair per chunk: each chunk's GEMMs see one pair's tokens only."""
    gen = torch.Generator().manual_seed(seed)
    pool = 64
    hidden, labels = dpo_case(gen, pool, 9, 40, 700)
    weight = (torch.randn(700, 40, generator=gen) / 40 ** 0.5).requires_grad_()
    sets = placements(gen, pool)
    losses, grads = [], []
    for rows in sets:
        both = torch.cat([rows, rows + pool])
        h = hidden[both].requires_grad_()
        loss = fused_linear_preference_loss(h, weight, labels[both], beta=0.5, loss_type="simpo", gamma=0.3,
                                            strategy="chunked", batch_invariant=True)[0]
        losses.append(loss.detach())
        grads.append(torch.stack(torch.autograd.grad(loss.sum(), h)[0].chunk(2), 1))
    assert_rows_equal(losses, sets, "chunked pair loss", seed)
    assert_rows_equal(grads, sets, "chunked pair hidden gradient", seed)


def test_refusals():
    """The torch backend cannot promise batch invariance, nor can a chunked DPO chunk that mixes pairs."""
    logits, labels = torch.randn(3, 11), torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match="batch invariant"):
        token_logprobs(logits, labels, backend="torch", batch_invariant=True)
    with pytest.raises(ValueError, match="batch invariant"):
        linear_token_logprobs(torch.randn(3, 4), torch.randn(11, 4), labels, backend="torch", batch_invariant=True)
    hidden, dpo_labels = dpo_case(torch.Generator().manual_seed(0), 2, 6, 4, 11)
    with pytest.raises(ValueError, match="chunk_size=1"):
        fused_linear_preference_loss(hidden, torch.randn(11, 4), dpo_labels, strategy="chunked", chunk_size=2,
                                     batch_invariant=True)
