// Vectorised per-row softmax kernels shared by the token_logprobs and linear_token_logprobs CPU ops.
//
// Both ops need, for each row of raw logits x and z = x * scale (scale = 1 / temperature):
//   * an online logsumexp: the row streams through once, in blocks that stay in L1 between a max pass
//     and an exp-sum pass; the running sum is rescaled whenever the running max grows;
//   * the scaled softmax coef * softmax(z), written in the row's own dtype (softmax_scaled), and the
//     full gradient row of a token log-prob with its label entry kept accurate (softmax_grad_row).
// The row statistics are kept as two numbers, never as one lse: the raw row max m (a logit, unscaled) and the
// log-sum s = log sum_j exp((x_j - m) * scale), so lse = m * scale + s. Every probability is then formed as
// exp((x_j - m) * scale - s): x_j - m is exact near the max and s is small, whereas exp(x_j * scale - lse)
// with a float32 lse of 1e4 / T would carry lse's ulp (2e-3 at 16667) into every probability.
// Inputs may be float, double, bfloat16 or half; the statistics are float (double for double inputs).
// The row sums use exp_u20 for float (a ~20 ULP polynomial: its errors average out in a sum of positive terms);
// the probabilities written out (softmax_scaled) use Sleef's 1-ULP exp, as eager's softmax does; double uses
// Sleef's exp everywhere.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace lit_align::cpu {

using at::vec::Vectorized;

// Statistics type of an input type: double for double, float for float/bf16/half.
template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
constexpr int64_t kStep = 2 * Vectorized<acc_t<T>>::size();  // elements per unrolled iteration

// kStep elements of T as two acc_t<T> vectors (and back).
template <typename T>
inline void load2(const T* p, Vectorized<acc_t<T>>& a, Vectorized<acc_t<T>>& b) {
  using Vec = Vectorized<acc_t<T>>;
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    a = Vec::loadu(p);
    b = Vec::loadu(p + Vec::size());
  } else {
    at::vec::load_to_float(p, a, b);
  }
}

template <typename T>
inline void store2(T* p, const Vectorized<acc_t<T>>& a, const Vectorized<acc_t<T>>& b) {
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    a.store(p);
    b.store(p + Vectorized<acc_t<T>>::size());
  } else {
    at::vec::convert_from_float<T>(a, b).store(p);
  }
}

inline Vectorized<float> vexp_sum(const Vectorized<float>& x) { return x.exp_u20(); }
inline Vectorized<double> vexp_sum(const Vectorized<double>& x) { return x.exp(); }
template <typename A>
inline Vectorized<A> vexp(const Vectorized<A>& x) { return x.exp(); }

// Running statistics of one row: max of the raw values and sum of exp((x - max) * scale). A row of -inf keeps
// max = -inf and sum = 0.
template <typename A>
struct OnlineLSE {
  A max = -std::numeric_limits<A>::infinity();
  A sum = 0;
  A log_sum() const { return std::log(sum); }
  // Folds another partial (of the same row, other columns) into this one.
  void merge(const OnlineLSE& other, A scale) {
    const A new_max = std::max(max, other.max);
    if (new_max == -std::numeric_limits<A>::infinity()) return;
    sum = (sum > 0 ? sum * std::exp((max - new_max) * scale) : A(0)) +
          (other.sum > 0 ? other.sum * std::exp((other.max - new_max) * scale) : A(0));
    max = new_max;
  }
};

// max(x[0:n]) of the raw values.
template <typename T>
inline acc_t<T> row_max(const T* x, int64_t n) {
  using A = acc_t<T>;
  using Vec = Vectorized<A>;
  constexpr A kNegInf = -std::numeric_limits<A>::infinity();
  Vec m0(kNegInf), m1(kNegInf), a, b;
  int64_t j = 0;
  for (; j + kStep<T> <= n; j += kStep<T>) {
    load2(x + j, a, b);
    m0 = at::vec::maximum(m0, a);
    m1 = at::vec::maximum(m1, b);
  }
  A m = at::vec::vec_reduce_all<A>([](Vec& p, Vec& q) { return at::vec::maximum(p, q); },
                                   at::vec::maximum(m0, m1));
  for (; j < n; ++j) m = std::max(m, static_cast<A>(x[j]));
  return m;
}

// sum_j exp((x[j] - max) * scale).
template <typename T>
inline acc_t<T> row_sum_exp(const T* x, int64_t n, acc_t<T> scale, acc_t<T> max) {
  using A = acc_t<T>;
  using Vec = Vectorized<A>;
  const Vec vscale(scale), vmax(max);
  Vec s0(A(0)), s1(A(0)), a, b;
  int64_t j = 0;
  for (; j + kStep<T> <= n; j += kStep<T>) {
    load2(x + j, a, b);
    s0 = s0 + vexp_sum((a - vmax) * vscale);
    s1 = s1 + vexp_sum((b - vmax) * vscale);
  }
  A s = at::vec::vec_reduce_all<A>([](Vec& p, Vec& q) { return p + q; }, s0 + s1);
  for (; j < n; ++j) s += std::exp((static_cast<A>(x[j]) - max) * scale);
  return s;
}

// Folds the row segment x[0:n] into `state`, in L1-sized blocks counted from x (one read from memory).
template <typename T>
inline void online_lse_update(const T* x, int64_t n, acc_t<T> scale, OnlineLSE<acc_t<T>>& state) {
  using A = acc_t<T>;
  constexpr int64_t kBlock = 4096;  // 16 KiB of float: max pass, then exp pass from L1
  for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
    const int64_t len = std::min(kBlock, n - j0);
    const A new_max = std::max(state.max, row_max(x + j0, len));
    if (new_max == -std::numeric_limits<A>::infinity()) continue;  // only -inf so far: contributes 0
    const A block_sum = row_sum_exp(x + j0, len, scale, new_max);
    state.sum = (state.sum > 0 ? state.sum * std::exp((state.max - new_max) * scale) : A(0)) + block_sum;
    state.max = new_max;
  }
}

// log softmax(x * scale) at a raw value x of a row with statistics (max, log_sum).
template <typename A>
inline A log_prob(A x, A scale, A max, A log_sum) {
  return std::fma(x - max, scale, -log_sum);
}

// out[j] = coef * p_j with p_j = exp((x[j] - max) * scale - log_sum), rounded to T once; returns sum_j p_j.
// out may alias x.
template <typename T>
inline acc_t<T> softmax_scaled(const T* x, int64_t n, acc_t<T> scale, acc_t<T> max, acc_t<T> log_sum,
                               acc_t<T> coef, T* out) {
  using A = acc_t<T>;
  using Vec = Vectorized<A>;
  const Vec vscale(scale), vmax(max), vneg(-log_sum), vcoef(coef);
  Vec s0(A(0)), s1(A(0)), a, b;
  int64_t j = 0;
  for (; j + kStep<T> <= n; j += kStep<T>) {
    load2(x + j, a, b);
    const Vec pa = vexp(at::vec::fmadd(a - vmax, vscale, vneg));
    const Vec pb = vexp(at::vec::fmadd(b - vmax, vscale, vneg));
    s0 = s0 + pa;
    s1 = s1 + pb;
    store2(out + j, vcoef * pa, vcoef * pb);
  }
  A s = at::vec::vec_reduce_all<A>([](Vec& p, Vec& q) { return p + q; }, s0 + s1);
  for (; j < n; ++j) {
    const A p = std::exp(log_prob(static_cast<A>(x[j]), scale, max, log_sum));
    s += p;
    out[j] = static_cast<T>(coef * p);
  }
  return s;
}

// 1 - p of a probability p = exp(log_p) without cancellation: directly below 1/2, as -expm1(log p) above.
template <typename A>
inline A one_minus_p(A p, A log_p) {
  return p < A(0.5) ? A(1) - p : -std::expm1(log_p);
}

// One row of d(g_logp * log p_label + g_lse * lse) / dx for z = x * scale, p = softmax(z):
//   out[j] = (g_lse - g_logp) * p_j * scale (j != label),  out[label] = (g_lse * p_label + g_logp * q) * scale,
// with q = 1 - p_label formed without cancellation: directly while p_label < 1/2, otherwise as
// sum_{j != label} p_j, which keeps the relative accuracy of its small terms even when q is below float32's
// epsilon (where 1 - p_label, or expm1 of a log-sum rounded at 1, would give 0). Everything in acc_t<T>; each
// output rounded to T once.
template <typename T>
inline void softmax_grad_row(const T* x, int64_t n, acc_t<T> scale, acc_t<T> max, acc_t<T> log_sum,
                             acc_t<T> g_logp, acc_t<T> g_lse, int64_t label, T* out) {
  using A = acc_t<T>;
  const A coef = (g_lse - g_logp) * scale;
  const A others = softmax_scaled(x, label, scale, max, log_sum, coef, out) +
                   softmax_scaled(x + label + 1, n - label - 1, scale, max, log_sum, coef, out + label + 1);
  const A p_label = std::exp(log_prob(static_cast<A>(x[label]), scale, max, log_sum));
  const A q = p_label < A(0.5) ? A(1) - p_label : others;
  out[label] = static_cast<T>((g_lse * p_label + g_logp * q) * scale);
}

}  // namespace lit_align::cpu
