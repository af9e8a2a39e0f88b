// lit_align::* operator schemas, declared once here (the extension-cpp layout).
// Each backend registers kernels for them in its own file: cpu/*.cpp with
// TORCH_LIBRARY_IMPL(lit_align, CPU, m) and cuda/*.cpp with TORCH_LIBRARY_IMPL(lit_align, CUDA, m).
// Python adds the fake (meta) kernels (lit_align/ops/_library.py) and the autograd formulas, which the Triton
// ops share (lit_align/ops/_autograd.py).
//
// Conventions shared by every kernel:
//   * statistics (max, log-sums, sums) in float32 (float64 for float64 inputs);
//   * rows whose label == ignore_index give logp = 0 and statistics 0 exactly and receive zero gradient;
//   * the log-prob ops return each row's softmax statistics as two numbers, never one float32 logsumexp:
//     row_max, the max of the raw logits (before the temperature), and log_sum = log sum_j exp((x_j - row_max) / T),
//     so that logsumexp(x / T) = row_max / T + log_sum and every probability of the backward is formed as
//     exp((x_j - row_max) / T - log_sum) (a float32 lse of 1e4 / T has an ulp of 2e-3, which it would carry
//     into every probability). row_max is the shift, a constant for autograd; log_sum is differentiable:
//     grad_logits = (g_logp * onehot + (g_log_sum - g_logp) * softmax) / temperature;
//   * batch_invariant (the linear op; the others are batch invariant by construction): a row's log-prob and
//     its hidden-state gradient are bitwise identical whatever else is in the batch (fixed-order products
//     instead of a BLAS GEMM whose blocking depends on the batch shape). The weight gradient, a sum over the
//     rows, is deterministic for a given batch but not batch invariant.
#include <torch/library.h>
#include <Python.h>

// Importing lit_align._C from Python runs the static initialisers below (schemas + kernels).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(lit_align, m) {
  // logits [N, V] (float64/float32/bf16/fp16), labels [N] int64 -> (logp, row_max, log_sum) [N] f32 each
  // (float64 logits give float64 outputs.)
  m.def("token_logprobs(Tensor logits, Tensor labels, int ignore_index, float temperature) "
        "-> (Tensor, Tensor, Tensor)");
  // -> grad_logits [N, V] in logits' dtype
  m.def("token_logprobs_backward(Tensor grad_logp, Tensor grad_log_sum, Tensor logits, Tensor labels, "
        "Tensor row_max, Tensor log_sum, int ignore_index, float temperature) -> Tensor");
  // hidden [N, H], weight [V, H], bias [V]? , labels [N] -> (logp, row_max, log_sum) [N] f32 each; never holds
  // [N, V].
  m.def("linear_token_logprobs(Tensor hidden, Tensor weight, Tensor? bias, Tensor labels, int ignore_index, "
        "float temperature, bool batch_invariant) -> (Tensor, Tensor, Tensor)");
  // -> (grad_hidden [N, H], grad_weight [V, H] or [0] when not compute_weight_grad, grad_bias [V] or [0])
  m.def("linear_token_logprobs_backward(Tensor grad_logp, Tensor grad_log_sum, Tensor hidden, Tensor weight, "
        "Tensor? bias, Tensor labels, Tensor row_max, Tensor log_sum, int ignore_index, float temperature, "
        "bool compute_weight_grad, bool batch_invariant) -> (Tensor, Tensor, Tensor)");
  // token_logp [N], segment_ids [N] int64 in [-1, num_segments) (-1: excluded) -> [num_segments]
  // sum (or mean over the included tokens; an empty segment gives 0) per segment.
  m.def("sequence_logprobs(Tensor token_logp, Tensor segment_ids, int num_segments, bool mean) -> Tensor");
  // grad [num_segments] -> grad_token_logp [N]
  m.def("sequence_logprobs_backward(Tensor grad, Tensor segment_ids, int num_segments, bool mean) -> Tensor");
  // [B] each; label_smoothing [B]; -> (loss [B], chosen_rewards [B], rejected_rewards [B]) (rewards detached)
  m.def("preference_loss(Tensor policy_chosen, Tensor policy_rejected, Tensor? ref_chosen, Tensor? ref_rejected, "
        "Tensor label_smoothing, float beta, str loss_type, float gamma) -> (Tensor, Tensor, Tensor)");
  // -> d loss / d margin [B], where margin = (pc - rc) - (pr - rr) (refs taken as 0 when absent)
  m.def("preference_loss_backward(Tensor grad_loss, Tensor policy_chosen, Tensor policy_rejected, "
        "Tensor? ref_chosen, Tensor? ref_rejected, Tensor label_smoothing, float beta, str loss_type, float gamma) "
        "-> Tensor");
}
