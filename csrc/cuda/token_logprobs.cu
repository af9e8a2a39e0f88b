// token_logprobs on CUDA: log_softmax(logits / T)[label] per row in one pass over the logits, and the backward
// that rebuilds softmax from the saved per-row logsumexp, so the gradient is the only [N, V] buffer.
//
// Forward: one row per warp (short rows) or per block (long rows); each thread streams its share of the row in
// 16-byte groups with an online (max, sum) in float32 (float64 for float64), then the row all-reduces it
// (warp shuffles, then shared memory across warps). The label's logit is read once more (an L2 hit). Each row
// saves its raw max and log-sum, not one float32 lse (reduce.cuh says why).
// Backward: same row mapping; grad = (g_logp * onehot + (g_log_sum - g_logp) * p) / T, computed in float32 and
// rounded once to the logits' dtype; the label's entry uses one_minus_p (no cancellation when p_y is near 1).
// Batch invariant by construction: the launch shape depends on V only and visit_row's split on a row's length.
#include "kernels.h"
#include "rows.cuh"

namespace lit_align::cuda {
namespace {

template <typename T, bool kWarpPerRow>
__global__ void __launch_bounds__(row_threads(kWarpPerRow))
token_logprobs_forward_kernel(const T* __restrict__ logits, const int64_t* __restrict__ labels, int64_t rows,
                              int64_t vocab, int64_t ignore_index, OnlineLse<StatT<T>> lse_op,
                              StatT<T>* __restrict__ logp, StatT<T>* __restrict__ row_max,
                              StatT<T>* __restrict__ log_sum, unsigned long long* __restrict__ first_bad_row) {
  using S = StatT<T>;
  using Group = RowGroup<kWarpPerRow>;
  const int64_t row = Group::row();
  if (row >= rows) return;  // uniform over the row's threads
  const int64_t label = labels[row];
  if (label == ignore_index || label < 0 || label >= vocab) {
    if (Group::rank() == 0) {
      const bool ignored = label == ignore_index;
      if (!ignored) atomicMin(first_bad_row, static_cast<unsigned long long>(row));
      logp[row] = ignored ? S(0) : static_cast<S>(NAN);
      row_max[row] = ignored ? S(0) : static_cast<S>(NAN);
      log_sum[row] = ignored ? S(0) : static_cast<S>(NAN);
    }
    return;
  }
  const T* x = logits + row * vocab;  // (V,)
  Stat<S> st = stat_empty<S>();
  visit_row(x, vocab, Group::rank(), Group::size(), [&](int64_t, const T* v, auto count) {
    constexpr int n = decltype(count)::value;
    S xs[n];
#pragma unroll
    for (int k = 0; k < n; ++k) xs[k] = to_stat<S>(v[k]);
    lse_op.add(st, xs);
  });
  st = Group::all_reduce(st, lse_op);
  if (Group::rank() == 0) {
    logp[row] = lse_op.log_prob(st, to_stat<S>(x[label]));
    row_max[row] = st.m;
    log_sum[row] = lse_op.log_sum(st);
  }
}

template <typename T, bool kWarpPerRow>
__global__ void __launch_bounds__(row_threads(kWarpPerRow))
token_logprobs_backward_kernel(const T* __restrict__ logits, const int64_t* __restrict__ labels,
                               const StatT<T>* __restrict__ row_max, const StatT<T>* __restrict__ log_sum,
                               const StatT<T>* __restrict__ grad_logp, const StatT<T>* __restrict__ grad_log_sum,
                               int64_t rows, int64_t vocab, int64_t ignore_index, StatT<T> inv_temp,
                               T* __restrict__ grad) {
  using S = StatT<T>;
  using Group = RowGroup<kWarpPerRow>;
  const int64_t row = Group::row();
  if (row >= rows) return;
  const T* x = logits + row * vocab;  // (V,)
  T* out = grad + row * vocab;        // (V,)
  const int64_t label = labels[row];
  if (label == ignore_index) {
    fill_row(out, vocab, Group::rank(), Group::size(), from_stat<T>(S(0)));
    return;
  }
  const RowSoftmax<S> rs(row_max[row], log_sum[row], inv_temp);
  const S g_softmax = (grad_log_sum[row] - grad_logp[row]) * inv_temp;  // softmax coefficient
  const S g_label = label_grad(rs, to_stat<S>(x[label]), grad_logp[row], grad_log_sum[row], inv_temp);
  const bool out_aligned = pack_aligned(out);
  visit_row(x, vocab, Group::rank(), Group::size(), [&](int64_t j0, const T* v, auto count) {
    constexpr int n = decltype(count)::value;
    T y[n];
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const S g = j0 + k == label ? g_label : g_softmax * rs.softmax_at(to_stat<S>(v[k]));
      y[k] = from_stat<T>(g);
    }
    store_elems(out + j0, y, out_aligned);
  });
}

}  // namespace

template <typename T>
void token_logprobs_forward(const T* logits, const int64_t* labels, int64_t rows, int64_t vocab,
                            int64_t ignore_index, double temperature, StatT<T>* logp, StatT<T>* row_max,
                            StatT<T>* log_sum, int64_t* first_bad_row, cudaStream_t stream) {
  if (rows == 0) return;
  using S = StatT<T>;
  const OnlineLse<S> lse_op{static_cast<S>(kLog2e / temperature), static_cast<S>(1.0 / temperature)};
  auto* bad = reinterpret_cast<unsigned long long*>(first_bad_row);
  const RowLaunch cfg = row_launch(rows, vocab, sizeof(T));
  if (cfg.warp_per_row) {
    token_logprobs_forward_kernel<T, true><<<cfg.grid, cfg.block, 0, stream>>>(
        logits, labels, rows, vocab, ignore_index, lse_op, logp, row_max, log_sum, bad);
  } else {
    token_logprobs_forward_kernel<T, false><<<cfg.grid, cfg.block, 0, stream>>>(
        logits, labels, rows, vocab, ignore_index, lse_op, logp, row_max, log_sum, bad);
  }
}

template <typename T>
void token_logprobs_backward(const T* logits, const int64_t* labels, const StatT<T>* row_max,
                             const StatT<T>* log_sum, const StatT<T>* grad_logp, const StatT<T>* grad_log_sum,
                             int64_t rows, int64_t vocab, int64_t ignore_index, double temperature, T* grad_logits,
                             cudaStream_t stream) {
  if (rows == 0) return;
  using S = StatT<T>;
  const S inv_temp = static_cast<S>(1.0 / temperature);
  const RowLaunch cfg = row_launch(rows, vocab, sizeof(T));
  if (cfg.warp_per_row) {
    token_logprobs_backward_kernel<T, true><<<cfg.grid, cfg.block, 0, stream>>>(
        logits, labels, row_max, log_sum, grad_logp, grad_log_sum, rows, vocab, ignore_index, inv_temp, grad_logits);
  } else {
    token_logprobs_backward_kernel<T, false><<<cfg.grid, cfg.block, 0, stream>>>(
        logits, labels, row_max, log_sum, grad_logp, grad_log_sum, rows, vocab, ignore_index, inv_temp, grad_logits);
  }
}

#define LIT_ALIGN_INSTANTIATE(T)                                                                               \
  template void token_logprobs_forward<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, double,         \
                                          StatT<T>*, StatT<T>*, StatT<T>*, int64_t*, cudaStream_t);            \
  template void token_logprobs_backward<T>(const T*, const int64_t*, const StatT<T>*, const StatT<T>*,         \
                                           const StatT<T>*, const StatT<T>*, int64_t, int64_t, int64_t, double, \
                                           T*, cudaStream_t);
LIT_ALIGN_FOR_EACH_DTYPE(LIT_ALIGN_INSTANTIATE)
#undef LIT_ALIGN_INSTANTIATE

}  // namespace lit_align::cuda
