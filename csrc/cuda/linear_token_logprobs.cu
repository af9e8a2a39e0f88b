// linear_token_logprobs on CUDA: the per-tile kernels around the binding's cuBLAS vocabulary tiles.
//
// The binding (linear_token_logprobs_binding.cpp) drops ignored rows, then walks the vocabulary in tiles:
// cuBLAS writes one float32 logits tile hidden_c @ weight[v0:v1].T ([rows, cols], never the full [N, V]) and
// these kernels use it:
//   * forward  (linear_fold_tile): fold the tile into the running online-logsumexp (max, sum) of each row and
//     pick the target logit when the label falls in the tile; linear_finalize gives logp and the row's
//     statistics (raw max, log-sum; never one float32 lse) at the end;
//   * backward (linear_grad_tile): the logits tile is recomputed rather than stored (Cut Cross-Entropy,
//     Wijmans et al., arXiv 2411.09009) and turned into dlogits = (g_logp*onehot + (g_log_sum-g_logp)*p) / T,
//     in place (float32/64) or as a bf16/fp16 copy for the two gradient GEMMs, plus the column sums that make
//     grad_bias; the label's entry uses one_minus_p. All arithmetic is float32 (float64 for float64); only the
//     GEMM operand is rounded. Both kernels treat every row alike (visit_row splits by column, not address).
#include "kernels.h"
#include "rows.cuh"

namespace lit_align::cuda {
namespace {

template <typename S, typename T>
__device__ __forceinline__ S bias_at(const T* bias, int64_t j) {
  return bias == nullptr ? S(0) : to_stat<S>(bias[j]);
}

template <typename T, bool kWarpPerRow>
__global__ void __launch_bounds__(row_threads(kWarpPerRow))
linear_fold_tile_kernel(const StatT<T>* __restrict__ tile, const T* __restrict__ bias,
                        const int64_t* __restrict__ labels, int64_t rows, int64_t cols, int64_t col0,
                        OnlineLse<StatT<T>> lse_op, bool first, StatT<T>* __restrict__ run_max,
                        StatT<T>* __restrict__ run_sum, StatT<T>* __restrict__ target) {
  using S = StatT<T>;
  using Group = RowGroup<kWarpPerRow>;
  const int64_t row = Group::row();
  if (row >= rows) return;  // uniform over the row's threads
  const S* z = tile + row * cols;  // (cols,)
  Stat<S> st = stat_empty<S>();
  visit_row(z, cols, Group::rank(), Group::size(), [&](int64_t j0, const S* v, auto count) {
    constexpr int n = decltype(count)::value;
    S xs[n];
#pragma unroll
    for (int k = 0; k < n; ++k) xs[k] = v[k] + bias_at<S>(bias, j0 + k);
    lse_op.add(st, xs);
  });
  st = Group::all_reduce(st, lse_op);
  if (Group::rank() == 0) {
    if (!first) st = lse_op(st, Stat<S>{run_max[row], run_sum[row]});
    run_max[row] = st.m;
    run_sum[row] = st.s;
    const int64_t j = labels[row] - col0;
    if (j >= 0 && j < cols) target[row] = z[j] + bias_at<S>(bias, j);  // the raw target logit
  }
}

template <typename S>
__global__ void linear_finalize_kernel(const S* __restrict__ run_max, const S* __restrict__ run_sum,
                                       const S* __restrict__ target, const int64_t* __restrict__ row_index,
                                       int64_t rows, OnlineLse<S> lse_op, S* __restrict__ logp,
                                       S* __restrict__ row_max, S* __restrict__ log_sum) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  const Stat<S> st{run_max[i], run_sum[i]};
  const int64_t r = row_index[i];
  logp[r] = lse_op.log_prob(st, target[i]);
  row_max[r] = st.m;
  log_sum[r] = lse_op.log_sum(st);
}

// One thread per column (coalesced across the warp), kGradRows rows per block: each thread keeps its column's
// partial sum for grad_bias and adds it with one atomic. `tile` and `grad` may alias (no __restrict__).
constexpr int kGradCols = 256;
constexpr int kGradRows = 64;

template <typename T>
__global__ void __launch_bounds__(kGradCols)
linear_grad_tile_kernel(const StatT<T>* tile, const T* __restrict__ bias, const int64_t* __restrict__ labels,
                        const StatT<T>* __restrict__ row_max, const StatT<T>* __restrict__ log_sum,
                        const StatT<T>* __restrict__ grad_logp, const StatT<T>* __restrict__ grad_log_sum,
                        int64_t rows, int64_t cols, int64_t col0, StatT<T> inv_temp, T* grad,
                        StatT<T>* __restrict__ grad_bias) {
  using S = StatT<T>;
  __shared__ S max_s[kGradRows], log_sum_s[kGradRows], g_logp_s[kGradRows], g_log_sum_s[kGradRows];
  __shared__ int64_t label_col[kGradRows];
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kGradRows;
  const int nr = static_cast<int>(rows - r0 < kGradRows ? rows - r0 : kGradRows);
  for (int i = threadIdx.x; i < nr; i += blockDim.x) {
    const int64_t r = r0 + i;
    max_s[i] = row_max[r];
    log_sum_s[i] = log_sum[r];
    g_logp_s[i] = grad_logp[r];
    g_log_sum_s[i] = grad_log_sum[r];
    label_col[i] = labels[r] - col0;
  }
  __syncthreads();
  const int64_t c = static_cast<int64_t>(blockIdx.y) * kGradCols + threadIdx.x;
  if (c >= cols) return;
  const S b = bias_at<S>(bias, c);
  S column_sum = S(0);
  for (int i = 0; i < nr; ++i) {
    const int64_t at = (r0 + i) * cols + c;
    const RowSoftmax<S> rs(max_s[i], log_sum_s[i], inv_temp);
    const S z = tile[at] + b;
    const S g = label_col[i] == c ? label_grad(rs, z, g_logp_s[i], g_log_sum_s[i], inv_temp)
                                  : (g_log_sum_s[i] - g_logp_s[i]) * inv_temp * rs.softmax_at(z);
    grad[at] = from_stat<T>(g);
    column_sum += g;
  }
  if (grad_bias != nullptr) atomicAdd(grad_bias + c, column_sum);
}

}  // namespace

template <typename T>
void linear_fold_tile(const StatT<T>* tile, const T* bias_tile, const int64_t* labels, int64_t rows, int64_t cols,
                      int64_t col0, double temperature, bool first, StatT<T>* run_max, StatT<T>* run_sum,
                      StatT<T>* target, cudaStream_t stream) {
  if (rows == 0) return;
  using S = StatT<T>;
  const OnlineLse<S> lse_op{static_cast<S>(kLog2e / temperature), static_cast<S>(1.0 / temperature)};
  const RowLaunch cfg = row_launch(rows, cols, sizeof(S));
  if (cfg.warp_per_row) {
    linear_fold_tile_kernel<T, true><<<cfg.grid, cfg.block, 0, stream>>>(tile, bias_tile, labels, rows, cols, col0,
                                                                         lse_op, first, run_max, run_sum, target);
  } else {
    linear_fold_tile_kernel<T, false><<<cfg.grid, cfg.block, 0, stream>>>(tile, bias_tile, labels, rows, cols, col0,
                                                                          lse_op, first, run_max, run_sum, target);
  }
}

template <typename S>
void linear_finalize(const S* run_max, const S* run_sum, const S* target, const int64_t* row_index, int64_t rows,
                     double temperature, S* logp, S* row_max, S* log_sum, cudaStream_t stream) {
  if (rows == 0) return;
  const OnlineLse<S> lse_op{static_cast<S>(kLog2e / temperature), static_cast<S>(1.0 / temperature)};
  constexpr int kThreads = 256;
  const auto grid = static_cast<unsigned>((rows + kThreads - 1) / kThreads);
  linear_finalize_kernel<S><<<grid, kThreads, 0, stream>>>(run_max, run_sum, target, row_index, rows, lse_op, logp,
                                                            row_max, log_sum);
}

template <typename T>
void linear_grad_tile(const StatT<T>* tile, const T* bias_tile, const int64_t* labels, const StatT<T>* row_max,
                      const StatT<T>* log_sum, const StatT<T>* grad_logp, const StatT<T>* grad_log_sum, int64_t rows,
                      int64_t cols, int64_t col0, double temperature, T* grad_tile, StatT<T>* grad_bias_tile,
                      cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  using S = StatT<T>;
  const S inv_temp = static_cast<S>(1.0 / temperature);
  const dim3 grid(static_cast<unsigned>((rows + kGradRows - 1) / kGradRows),
                  static_cast<unsigned>((cols + kGradCols - 1) / kGradCols));  // (row blocks, column blocks)
  linear_grad_tile_kernel<T><<<grid, kGradCols, 0, stream>>>(tile, bias_tile, labels, row_max, log_sum, grad_logp,
                                                             grad_log_sum, rows, cols, col0, inv_temp, grad_tile,
                                                             grad_bias_tile);
}

#define LIT_ALIGN_INSTANTIATE(T)                                                                                  \
  template void linear_fold_tile<T>(const StatT<T>*, const T*, const int64_t*, int64_t, int64_t, int64_t, double, \
                                    bool, StatT<T>*, StatT<T>*, StatT<T>*, cudaStream_t);                         \
  template void linear_grad_tile<T>(const StatT<T>*, const T*, const int64_t*, const StatT<T>*, const StatT<T>*,  \
                                    const StatT<T>*, const StatT<T>*, int64_t, int64_t, int64_t, double, T*,       \
                                    StatT<T>*, cudaStream_t);
LIT_ALIGN_FOR_EACH_DTYPE(LIT_ALIGN_INSTANTIATE)
#undef LIT_ALIGN_INSTANTIATE
template void linear_finalize<float>(const float*, const float*, const float*, const int64_t*, int64_t, double,
                                     float*, float*, float*, cudaStream_t);
template void linear_finalize<double>(const double*, const double*, const double*, const int64_t*, int64_t, double,
                                      double*, double*, double*, cudaStream_t);

}  // namespace lit_align::cuda
