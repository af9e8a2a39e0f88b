// Warp/block all-reductions and the online-logsumexp statistic shared by the rowwise kernels.
//
// For a row x and temperature T, Stat{m, s} holds m = max x (raw, unscaled) and s = sum 2^((x - m) * scale),
// scale = log2(e) / T, so that logsumexp(x / T) = m / T + log2(s) * ln 2. Base 2 uses the hardware
// exponential (ex2) with the temperature folded into one multiply; keeping m unscaled makes x - m exact near the
// max, so a row dominated by one logit gives s = 1 and lse = m / T exactly, however large the logits.
// The ops save (m, log_sum = log s in base e) per row, never the float32 lse (whose ulp at 1e4 / T is 2e-3), and
// the backward rebuilds p = exp((x - m) / T - log_sum) (softmax_at); one_minus_p forms the label's 1 - p_y.
// Every helper is NaN-propagating and exact for -inf entries (masked logits contribute 0).
#pragma once

#include <cmath>
#include <cuda_runtime.h>

namespace lit_align::cuda {

constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2 = 0.69314718055994530942;

__device__ __forceinline__ float fast_exp2(float x) { return exp2f(x); }  // ex2.approx under --use_fast_math
__device__ __forceinline__ double fast_exp2(double x) { return exp2(x); }
__device__ __forceinline__ float fast_log2(float x) { return log2f(x); }
__device__ __forceinline__ double fast_log2(double x) { return log2(x); }

template <typename S>
__device__ __forceinline__ S neg_inf() { return -static_cast<S>(INFINITY); }

// A plain aggregate (no constructors), so that it can live in __shared__ memory.
template <typename S>
struct Stat {
  S m;  // running max of the raw values
  S s;  // sum of 2^((x - m) * scale)
};

template <typename S>
__device__ __forceinline__ Stat<S> stat_empty() { return {neg_inf<S>(), S(0)}; }

// The online logsumexp at one temperature: merging statistics (the all-reduce operator) and adding values.
template <typename S>
struct OnlineLse {
  S scale;     // log2(e) / T
  S inv_temp;  // 1 / T

  // 2^((old - new) * scale), exactly 1 when they are equal (so -inf == -inf does not give 2^NaN).
  __device__ __forceinline__ S rescale(S m_old, S m_new) const {
    return m_old == m_new ? S(1) : fast_exp2((m_old - m_new) * scale);
  }

  __device__ __forceinline__ Stat<S> operator()(Stat<S> a, Stat<S> b) const {
    const S m = fmax(a.m, b.m);
    return {m, a.s * rescale(a.m, m) + b.s * rescale(b.m, m)};
  }

  // Adds N raw values: one rescale per call, N exponentials.
  template <int N>
  __device__ __forceinline__ void add(Stat<S>& st, const S (&x)[N]) const {
    S vmax = x[0];
#pragma unroll
    for (int k = 1; k < N; ++k) vmax = fmax(vmax, x[k]);
    const S m = fmax(st.m, vmax);
    if (m == neg_inf<S>()) return;  // every value so far is -inf: nothing to add
    S sum = S(0);
#pragma unroll
    for (int k = 0; k < N; ++k) sum += fast_exp2((x[k] - m) * scale);
    st.s = st.s * rescale(st.m, m) + sum;
    st.m = m;
  }

  // log sum_j exp((x_j - m) / T) (base e) and log_softmax(x / T) at a raw value x of the row.
  __device__ __forceinline__ S log_sum(Stat<S> st) const { return fast_log2(st.s) * S(kLn2); }
  __device__ __forceinline__ S log_prob(Stat<S> st, S x) const { return (x - st.m) * inv_temp - log_sum(st); }
};

// A row's saved statistics, ready for softmax_at: the raw max and log_sum in base 2.
template <typename S>
struct RowSoftmax {
  S max;       // raw row max
  S log2_sum;  // log_sum * log2(e)
  S scale2;    // log2(e) / T
  __device__ __forceinline__ RowSoftmax(S row_max, S log_sum, S inv_temp)
      : max(row_max), log2_sum(log_sum * static_cast<S>(kLog2e)), scale2(inv_temp * static_cast<S>(kLog2e)) {}
  // log2 softmax(x / T) at a raw value x: (x - max) * log2(e) / T - log2_sum, x - max exact near the max.
  __device__ __forceinline__ S log2_prob(S x) const { return fma(x - max, scale2, -log2_sum); }
  __device__ __forceinline__ S softmax_at(S x) const { return fast_exp2(log2_prob(x)); }
};

// 1 - p for p = exp(log_p) without cancellation: directly below 1/2, -expm1(log_p) above (expm1 is exact even
// under --use_fast_math, which only swaps exp/log/pow/trig for their intrinsics).
__device__ __forceinline__ float one_minus_p(float p, float log_p) { return p < 0.5f ? 1.0f - p : -expm1f(log_p); }
__device__ __forceinline__ double one_minus_p(double p, double log_p) { return p < 0.5 ? 1.0 - p : -expm1(log_p); }

// The label's entry of d(g_logp * log p_label + g_log_sum * lse) / dx: (g_log_sum * p + g_logp * (1 - p)) / T.
template <typename S>
__device__ __forceinline__ S label_grad(const RowSoftmax<S>& rs, S x_label, S g_logp, S g_log_sum, S inv_temp) {
  const S log2_p = rs.log2_prob(x_label);
  const S p = fast_exp2(log2_p);
  return (g_log_sum * p + g_logp * one_minus_p(p, log2_p * static_cast<S>(kLn2))) * inv_temp;
}

__device__ __forceinline__ float shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ double shfl_xor(double v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
template <typename S>
__device__ __forceinline__ Stat<S> shfl_xor(Stat<S> v, int mask) { return {shfl_xor(v.m, mask), shfl_xor(v.s, mask)}; }

// Butterfly all-reduce over the 32 lanes of a full warp: every lane gets the same value (op is commutative).
template <typename V, typename Op>
__device__ __forceinline__ V warp_all_reduce(V v, Op op) {
#pragma unroll
  for (int mask = 16; mask > 0; mask >>= 1) v = op(v, shfl_xor(v, mask));
  return v;
}

// All-reduce over the block (blockDim.x a multiple of 32, at most 1024); every thread must call it.
// Every thread folds the per-warp partials in the same order, so all get bit-identical results.
template <typename V, typename Op>
__device__ __forceinline__ V block_all_reduce(V v, Op op) {
  __shared__ V partial[32];
  v = warp_all_reduce(v, op);
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) partial[warp] = v;
  __syncthreads();
  v = partial[0];
  for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) v = op(v, partial[w]);
  __syncthreads();  // partial[] may be reused by a later call
  return v;
}

}  // namespace lit_align::cuda
