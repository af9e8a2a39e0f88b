// CPU kernels for lit_align::token_logprobs and its backward (schemas: csrc/ops.cpp).
//
// Forward: one pass per row over the logits with an online max/sum (row_softmax.h), keeping only the
// per-row statistics (raw max, log-sum), instead of eager's `log_softmax(-1).gather(...)` which writes a second
// [N, V] tensor. Backward: grad = (g_logp * onehot + (g_lse - g_logp) * softmax) / T written in one pass from
// the saved statistics into a buffer allocated with at::empty: the gradient is the only [N, V] allocation.
// Every entry, the label's g_logp * (1 - p_y) / T included, is computed in float32 before its one rounding.
// Batch invariant by construction: a row's results depend only on that row (the vector blocks are counted from
// the row's start, loads are unaligned, and parallel_for only decides which thread runs a row).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "checks.h"
#include "row_softmax.h"

namespace lit_align::cpu {
namespace {

constexpr int64_t kGrainElems = 32768;  // at least this many logits per parallel task

int64_t row_grain(int64_t vocab) { return std::max<int64_t>(1, kGrainElems / std::max<int64_t>(vocab, 1)); }

void check_logits(const at::Tensor& logits, double temperature) {
  check_float("logits", logits);
  TORCH_CHECK_VALUE(logits.dim() == 2, "logits must be (N, V), got ", logits.sizes());
  check_temperature(temperature);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs(const at::Tensor& logits_in, const at::Tensor& labels_in,
                                                  int64_t ignore_index, double temperature) {
  check_logits(logits_in, temperature);
  const int64_t n = logits_in.size(0), vocab = logits_in.size(1);
  const at::Tensor labels = checked_labels(labels_in, n, vocab, ignore_index);
  const at::Tensor logits = logits_in.contiguous();  // (N, V)
  at::Tensor logp = at::empty({n}, logits.options().dtype(acc_dtype(logits)));  // (N,)
  at::Tensor row_max = at::empty({n}, logp.options());  // (N,)
  at::Tensor log_sum = at::empty({n}, logp.options());  // (N,)
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "token_logprobs", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    const int64_t* y = labels.const_data_ptr<int64_t>();
    A* logp_out = logp.data_ptr<A>();
    A* max_out = row_max.data_ptr<A>();
    A* log_sum_out = log_sum.data_ptr<A>();
    const A scale = static_cast<A>(1.0 / temperature);
    at::parallel_for(0, n, row_grain(vocab), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        if (y[i] == ignore_index) {
          logp_out[i] = max_out[i] = log_sum_out[i] = A(0);
          continue;
        }
        const scalar_t* row = x + i * vocab;
        OnlineLSE<A> state;
        online_lse_update(row, vocab, scale, state);
        max_out[i] = state.max;
        log_sum_out[i] = state.log_sum();
        logp_out[i] = log_prob(static_cast<A>(row[y[i]]), scale, state.max, log_sum_out[i]);
      }
    });
  });
  return {logp, row_max, log_sum};
}

at::Tensor token_logprobs_backward(const at::Tensor& grad_logp_in, const at::Tensor& grad_lse_in,
                                   const at::Tensor& logits_in, const at::Tensor& labels_in,
                                   const at::Tensor& row_max_in, const at::Tensor& log_sum_in, int64_t ignore_index,
                                   double temperature) {
  check_logits(logits_in, temperature);
  const int64_t n = logits_in.size(0), vocab = logits_in.size(1);
  const at::Tensor labels = checked_labels(labels_in, n, vocab, ignore_index);
  check_float("grad_logp", grad_logp_in);
  check_float("grad_lse", grad_lse_in);
  check_float("row_max", row_max_in);
  check_float("log_sum", log_sum_in);
  check_1d("grad_logp", grad_logp_in, n);
  check_1d("grad_lse", grad_lse_in, n);
  check_1d("row_max", row_max_in, n);
  check_1d("log_sum", log_sum_in, n);
  const at::Tensor logits = logits_in.contiguous();  // (N, V)
  const auto stat = acc_dtype(logits);
  const at::Tensor g_logp = grad_logp_in.to(stat).contiguous(), g_lse = grad_lse_in.to(stat).contiguous();
  const at::Tensor row_max = row_max_in.to(stat).contiguous(), log_sum = log_sum_in.to(stat).contiguous();
  at::Tensor grad = at::empty({n, vocab}, logits.options());  // (N, V): every element written once below
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "token_logprobs_backward", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    scalar_t* out = grad.data_ptr<scalar_t>();
    const int64_t* y = labels.const_data_ptr<int64_t>();
    const A* gp = g_logp.const_data_ptr<A>();
    const A* gl = g_lse.const_data_ptr<A>();
    const A* max_p = row_max.const_data_ptr<A>();
    const A* log_sum_p = log_sum.const_data_ptr<A>();
    const A scale = static_cast<A>(1.0 / temperature);
    at::parallel_for(0, n, row_grain(vocab), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        scalar_t* out_row = out + i * vocab;
        if (y[i] == ignore_index) {
          std::fill(out_row, out_row + vocab, scalar_t(0));
          continue;
        }
        softmax_grad_row(x + i * vocab, vocab, scale, max_p[i], log_sum_p[i], gp[i], gl[i], y[i], out_row);
      }
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(lit_align, CPU, m) {
  m.impl("token_logprobs", &token_logprobs);
  m.impl("token_logprobs_backward", &token_logprobs_backward);
}

}  // namespace lit_align::cpu
