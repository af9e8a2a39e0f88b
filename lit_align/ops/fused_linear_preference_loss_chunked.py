"""The Liger-style strategy for the fused DPO path: chunked, with the gradient computed in the forward.

`fused_linear_preference_loss(..., strategy="chunked")` lands here. The forward walks the pairs in chunks;
each chunk holds whole chosen and rejected sequences, so the chunk's per-pair losses are known inside it.
Per chunk it materialises only that chunk's logits (rows, V) in float32 (float64 for float64 inputs),
computes token log-probs, sequence sums (or means), the preference loss, and right away the gradients:

    dL_i/dscore            from preference_loss_reference (+ RPO's rpo_nll) on the chunk's (c,) scores (autograd
                           on c numbers)
    dlogits[t]             = coeff[t] * (onehot(y_t) - softmax(z_t)) / T,  coeff[t] = dL_i/dscore * (1/len)
    grad_hidden[t]         = dlogits[t] @ W               (rows of prompt/padding tokens stay 0: no head work)
    grad_W  += dlogits.T @ h,  grad_b += dlogits.sum(0)   (accumulated in float32 across chunks)

so the peak holds one chunk's logits rather than all (N, V) of them, and the backward does no matmul.
Only labelled tokens go through the LM head (prompt and padding cost nothing), and a chunk keeps a single
(rows, V) float32 buffer: the logits, overwritten in place by exp(z - max), then by dlogits. Extra memory:
grad_hidden (2B, T, H), grad_W (V, H) in float32 and one chunk's (rows, V); chunk_size (pairs per chunk,
default 1 as in Liger) trades that buffer against the number of matmul launches.
This is Liger-Kernel's chunked_loss design (LigerFusedLinearPreferenceBase); the other strategy,
"recompute" (fused_linear_preference_loss.py), recomputes logit tiles in its backward (Cut Cross-Entropy). The op
microbenchmark (benchmarks/bench_ops.py) measures both.

Per-pair losses and any upstream gradient. The op returns loss (B,) as the contract says, and the
backward must be right for any grad g (B,) of it, not only for .mean(). The gradient pieces are stored
for unit upstream gradient per pair:
  * hidden rows belong to one pair each, so grad_hidden is exact for any g: the rows of pair i are scaled
    by g_i in the backward;
  * grad_W and grad_b mix all pairs. When g is uniform (loss.mean() or loss.sum(), i.e. training) they are
    scaled by g_0. Otherwise the backward recomputes them in a second chunked pass with the per-pair
    weights g_i (a CCE-style recompute of the logits, no (N, V) tensor either), which is exact too.
The reference scores' gradients (ref_chosen, ref_rejected) are -g * dL/dscore of the preference loss alone (the
RPO term has no reference); label_smoothing is a constant (no gradient). No double backward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from lit_align.losses.preference import rpo_nll
from lit_align.ops import _validate
from lit_align.ops.fused_linear_preference_loss import split_pairs  # that module imports this one lazily
from lit_align.ops.linear_token_logprobs import check_linear_inputs
from lit_align.ops.preference_loss import check_preference_inputs, preference_loss_reference

DEFAULT_CHUNK_SIZE = 1  # pairs per chunk, as in Liger's chunked losses


@dataclass(frozen=True)
class _Config:
    batch: int
    chunk_size: int
    ignore_index: int
    temperature: float
    average_log_prob: bool
    beta: float
    loss_type: str
    gamma: float
    rpo_alpha: float
    grad_enabled: bool  # grad mode at the call: under no_grad the forward does no gradient work


class _Rows(NamedTuple):
    """The tokens of one chunk that carry a label: the only rows that go through the LM head."""
    positions: torch.Tensor  # (n,) indices into the flattened (2B*T) tokens
    sequence: torch.Tensor  # (n,) local sequence of each token in [0, 2c): chosen 0..c-1, rejected c..2c-1
    labels: torch.Tensor  # (n,)
    scale: torch.Tensor  # (2c,) d score / d token log-prob: 1, or 1/length for average_log_prob
    lengths: torch.Tensor  # (2c,) labelled tokens per sequence, at least 1


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _pair_chunks(batch: int, chunk_size: int):
    """(start, stop) pair ranges; the last chunk is short when chunk_size does not divide batch."""
    return [(start, min(start + chunk_size, batch)) for start in range(0, batch, chunk_size)]


def _chunk_rows(labels: torch.Tensor, start: int, stop: int, cfg: _Config, dtype: torch.dtype) -> _Rows:
    """Labelled tokens of the chosen rows start..stop-1 and the rejected rows B+start..B+stop-1."""
    length = labels.shape[1]
    seqs = torch.cat([torch.arange(start, stop), torch.arange(cfg.batch + start, cfg.batch + stop)])
    seqs = seqs.to(labels.device)  # (2c,)
    chunk_labels = labels[seqs]  # (2c, T)
    valid = chunk_labels != cfg.ignore_index  # (2c, T)
    positions = (seqs.unsqueeze(1) * length + torch.arange(length, device=labels.device))[valid]  # (n,)
    local = torch.arange(seqs.numel(), device=labels.device).unsqueeze(1).expand_as(valid)[valid]  # (n,)
    lengths = valid.sum(1).clamp(min=1).to(dtype)  # (2c,)
    scale = 1 / lengths if cfg.average_log_prob else torch.ones_like(lengths)
    return _Rows(positions, local, chunk_labels[valid], scale, lengths)


def _head_logits(h: torch.Tensor, weight: torch.Tensor, bias, temperature: float) -> torch.Tensor:
    """z = (h @ W.T + b) / T in the compute dtype: (n, V), the only (rows, V) buffer of a chunk."""
    z = F.linear(h, weight, bias).to(_compute_dtype(h.dtype))  # (n, V)
    return z.div_(temperature) if temperature != 1.0 else z


def _exp_shifted_(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Overwrite z (n, V) with exp(z - rowmax); return (log p[label] (n,), row sums of exp (n,)).

    In place, so that a chunk holds one (n, V) buffer (logsumexp would allocate a second one)."""
    target = z.gather(1, labels.unsqueeze(1)).squeeze(1)  # (n,)
    top = z.amax(-1)  # (n,)
    total = z.sub_(top.unsqueeze(1)).exp_().sum(-1)  # (n,)
    return target - top - total.log(), total


def _logits_grad_(e: torch.Tensor, total: torch.Tensor, labels: torch.Tensor, coeff: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """Overwrite e = exp(z - max) (n, V) with d(sum_t coeff_t * logp_t)/d logits = coeff * (onehot - softmax) / T."""
    e.mul_((-coeff / total).unsqueeze(1))  # -coeff * softmax, in float32
    e[torch.arange(e.shape[0], device=e.device), labels] += coeff  # p_y - 1 formed before any rounding
    return e.div_(temperature) if temperature != 1.0 else e


@dataclass
class _Grads:
    """Gradient buffers: hidden (2B*T, H) in hidden's dtype; weight and bias accumulated in float32."""
    hidden: torch.Tensor | None
    weight: torch.Tensor | None
    bias: torch.Tensor | None

    @classmethod
    def zeros(cls, flat_hidden, weight, bias, need_hidden: bool, need_weight: bool, need_bias: bool):
        dtype = _compute_dtype(weight.dtype)
        return cls(torch.zeros_like(flat_hidden) if need_hidden else None,
                   torch.zeros(weight.shape, dtype=dtype, device=weight.device) if need_weight else None,
                   torch.zeros(bias.shape, dtype=dtype, device=bias.device) if need_bias else None)

    def any(self) -> bool:
        return self.hidden is not None or self.weight is not None or self.bias is not None

    def add_chunk(self, dz: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, positions: torch.Tensor) -> None:
        """dz (n, V) for the rows h (n, H) at `positions`: hidden rows set, weight/bias sums accumulated."""
        dz_in = dz.to(weight.dtype)  # (n, V): a no-op for float32/float64
        if self.weight is not None:
            if dz_in.dtype == self.weight.dtype:
                self.weight.addmm_(dz_in.t(), h)  # (V, H)
            else:  # bf16/fp16: the product in the input dtype, the sum over chunks in float32
                self.weight.add_(dz_in.t() @ h)
        if self.bias is not None:
            self.bias.add_(dz.sum(0))
        if self.hidden is not None:
            self.hidden[positions] = dz_in @ weight  # (n, H)


def _slice_pairs(value, start: int, stop: int):
    """A (B,) tensor's chunk; None and scalars pass through."""
    return value[start:stop] if isinstance(value, torch.Tensor) and value.dim() == 1 else value


def _pair_losses(scores: torch.Tensor, lengths: torch.Tensor, refs, eps, cfg: _Config):
    """Loss, rewards, dloss_i/dscore (2c,) and d(preference loss_i)/dscore (2c,) (the reference scores' share,
    without RPO's term) for one chunk's (2c,) scores and token counts (chosen then rejected)."""
    half = scores.shape[0] // 2
    refs = [None if r is None else r.detach() for r in refs]
    with torch.enable_grad():
        chosen = scores[:half].detach().requires_grad_()
        rejected = scores[half:].detach().requires_grad_()
        loss, chosen_rewards, rejected_rewards = preference_loss_reference(
            chosen, rejected, *refs, beta=cfg.beta, loss_type=cfg.loss_type, label_smoothing=eps, gamma=cfg.gamma)
        # per pair: loss_i depends on pair i only
        ref_coeff = coeff = torch.autograd.grad(loss.sum(), (chosen, rejected), retain_graph=bool(cfg.rpo_alpha))
        if cfg.rpo_alpha:
            loss = loss + cfg.rpo_alpha * rpo_nll(chosen, None if cfg.average_log_prob else lengths[:half])
            coeff = torch.autograd.grad(loss.sum(), (chosen, rejected))
    return loss.detach(), chosen_rewards, rejected_rewards, torch.cat(coeff), torch.cat(ref_coeff)


def _forward_chunk(flat_hidden, weight, bias, labels, refs, label_smoothing, start: int, stop: int,
                   cfg: _Config, grads: _Grads):
    """Pairs start..stop-1: (loss, chosen_rewards, rejected_rewards, scores (2c,), coeff (2c,), ref_coeff (2c,));
    fills grads."""
    rows = _chunk_rows(labels, start, stop, cfg, _compute_dtype(flat_hidden.dtype))
    h = flat_hidden[rows.positions]  # (n, H)
    e = _head_logits(h, weight, bias, cfg.temperature)  # (n, V)
    token_logp, total = _exp_shifted_(e, rows.labels)  # (n,) each; e now exp(z - max)
    scores = torch.zeros(rows.scale.shape, dtype=token_logp.dtype, device=e.device)
    scores = scores.index_add_(0, rows.sequence, token_logp) * rows.scale  # (2c,)
    refs = [_slice_pairs(r, start, stop) for r in refs]  # (c,) each
    loss, chosen_rewards, rejected_rewards, coeff, ref_coeff = _pair_losses(
        scores, rows.lengths, refs, _slice_pairs(label_smoothing, start, stop), cfg)
    if grads.any():
        dz = _logits_grad_(e, total, rows.labels, (coeff * rows.scale)[rows.sequence], cfg.temperature)
        grads.add_chunk(dz, h, weight, rows.positions)
    return loss, chosen_rewards, rejected_rewards, scores, coeff, ref_coeff


def _recompute_chunk(flat_hidden, weight, bias, labels, pair_coeff, start: int, stop: int, cfg: _Config,
                     grads: _Grads) -> None:
    """The backward's second pass: weight/bias gradients of pairs start..stop-1 with weights pair_coeff (B, 2)."""
    rows = _chunk_rows(labels, start, stop, cfg, _compute_dtype(flat_hidden.dtype))
    h = flat_hidden[rows.positions]  # (n, H)
    e = _head_logits(h, weight, bias, cfg.temperature)  # (n, V)
    _, total = _exp_shifted_(e, rows.labels)
    coeff = pair_coeff[start:stop].t().reshape(-1)  # (2c,) chosen then rejected
    dz = _logits_grad_(e, total, rows.labels, (coeff * rows.scale)[rows.sequence], cfg.temperature)
    grads.add_chunk(dz, h, weight, rows.positions)


class ChunkedLinearPreference(torch.autograd.Function):
    """Gradient-in-forward fused DPO path; see the module docstring."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, ref_chosen, ref_rejected, labels, label_smoothing, cfg: _Config):
        flat_hidden = hidden.reshape(-1, hidden.shape[-1])  # (2B*T, H)
        needs = (cfg.grad_enabled and need for need in ctx.needs_input_grad[:3])
        grads = _Grads.zeros(flat_hidden, weight, bias, *needs)
        outputs = [_forward_chunk(flat_hidden, weight, bias, labels, (ref_chosen, ref_rejected), label_smoothing,
                                  start, stop, cfg, grads)
                   for start, stop in _pair_chunks(cfg.batch, cfg.chunk_size)]
        loss, chosen_rewards, rejected_rewards, scores, coeff, ref_coeff = _merge_chunks(outputs)
        ctx.cfg = cfg
        ctx.save_for_backward(hidden, weight, bias, labels, coeff, ref_coeff,
                              None if grads.hidden is None else grads.hidden.view_as(hidden),
                              None if grads.weight is None else grads.weight.to(weight.dtype),
                              None if grads.bias is None else grads.bias.to(bias.dtype))
        chosen_logprobs, rejected_logprobs = scores[:, 0], scores[:, 1]
        for t in (chosen_rewards, rejected_rewards, chosen_logprobs, rejected_logprobs):
            ctx.mark_non_differentiable(t)
        return loss, chosen_rewards, rejected_rewards, chosen_logprobs, rejected_logprobs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, *_unused):
        hidden, weight, bias, labels, coeff, ref_coeff, grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        g = grad_loss.to(coeff.dtype)  # (B,)
        if grad_hidden is not None:  # rows of pair i scaled by g_i: exact for any g
            grad_hidden = grad_hidden * torch.cat([g, g]).to(grad_hidden.dtype).view(-1, 1, 1)
        if grad_weight is not None or grad_bias is not None:
            if bool((g == g[0]).all()):  # .mean()/.sum(): the stored sums scale as a whole
                grad_weight = None if grad_weight is None else grad_weight * g[0].to(grad_weight.dtype)
                grad_bias = None if grad_bias is None else grad_bias * g[0].to(grad_bias.dtype)
            else:
                grad_weight, grad_bias = _recompute_head_grads(hidden, weight, bias, labels, coeff * g[:, None],
                                                               ctx.cfg, grad_weight is not None, grad_bias is not None)
        # margin = (chosen - ref_chosen) - (rejected - ref_rejected): d/d ref = -d/d policy score
        grad_refs = [-g * ref_coeff[:, side] if ctx.needs_input_grad[3 + side] else None for side in (0, 1)]
        return grad_hidden, grad_weight, grad_bias, *grad_refs, None, None, None


def _merge_chunks(outputs):
    """Concatenate the chunks' per-pair results; scores, coeff and ref_coeff become (B, 2): [:, 0] chosen,
    [:, 1] rejected."""
    loss, chosen_rewards, rejected_rewards = (torch.cat([o[i] for o in outputs]) for i in range(3))
    per_side = [torch.cat([torch.stack(o[j].chunk(2), dim=1) for o in outputs]) for j in (3, 4, 5)]  # (B, 2) each
    return loss, chosen_rewards, rejected_rewards, *per_side


def _recompute_head_grads(hidden, weight, bias, labels, pair_coeff, cfg: _Config, want_weight: bool,
                          want_bias: bool):
    """grad_W and grad_b for per-pair weights pair_coeff (B, 2), recomputing each chunk's logits."""
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])  # (2B*T, H)
    grads = _Grads.zeros(flat_hidden, weight, bias, False, want_weight, want_bias)
    for start, stop in _pair_chunks(cfg.batch, cfg.chunk_size):
        _recompute_chunk(flat_hidden, weight, bias, labels, pair_coeff, start, stop, cfg, grads)
    return (None if grads.weight is None else grads.weight.to(weight.dtype),
            None if grads.bias is None else grads.bias.to(bias.dtype))


def chunked_linear_preference_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                                   bias: torch.Tensor | None = None, ref_chosen: torch.Tensor | None = None,
                                   ref_rejected: torch.Tensor | None = None, beta: float = 0.1,
                                   loss_type: str = "sigmoid", label_smoothing=0.0, gamma: float = 0.0,
                                   rpo_alpha: float = 0.0, ignore_index: int = -100, average_log_prob: bool = False,
                                   temperature: float = 1.0, chunk_size: int | None = None):
    """hidden (2B, T, H), weight (V, H), labels (2B, T) -> (loss, chosen_rewards, rejected_rewards,
    chosen_logprobs, rejected_logprobs), each (B,); arguments as in fused_linear_preference_loss."""
    check_linear_inputs(hidden, weight, bias, labels, ignore_index)
    batch = split_pairs(hidden, labels)
    _validate.check_temperature(temperature)
    probe = torch.empty(batch, dtype=_compute_dtype(hidden.dtype))  # stands for the (B,) policy scores
    check_preference_inputs(probe, probe, ref_chosen, ref_rejected, beta, loss_type, label_smoothing)
    chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of pairs, got {chunk_size!r}")
    if isinstance(label_smoothing, torch.Tensor) and label_smoothing.dim() == 1:
        label_smoothing = label_smoothing.to(device=hidden.device).detach()
    cfg = _Config(batch, chunk_size, ignore_index, float(temperature), average_log_prob, beta, loss_type, gamma,
                  float(rpo_alpha), torch.is_grad_enabled())
    refs = [None if r is None else r.to(hidden.device) for r in (ref_chosen, ref_rejected)]  # (B,) each
    return ChunkedLinearPreference.apply(hidden, weight, bias, *refs, labels.long(), label_smoothing, cfg)
