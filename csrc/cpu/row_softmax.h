// Vectorised per-row softmax kernels shared by the token_logprobs and linear_token_logprobs CPU ops.
//
// Both ops need, for each row of logits z = x * scale (scale = 1 / temperature):
//   * an online logsumexp: the row streams through once, in blocks that stay in L1 between a max pass
//     and an exp-sum pass; the running sum is rescaled whenever the running max grows;
//   * the scaled softmax coef * exp(z - lse), written in the row's own dtype (softmax_scaled), and the
//     full gradient row of a token log-prob with its label entry kept accurate (softmax_grad_row).
// Inputs may be float, double, bfloat16 or half; the statistics are float (double for double inputs).
// float uses exp_u20 (a ~20 ULP polynomial, ample for probabilities and their sum), double uses Sleef exp.
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

inline Vectorized<float> vexp(const Vectorized<float>& x) { return x.exp_u20(); }
inline Vectorized<double> vexp(const Vectorized<double>& x) { return x.exp(); }

// Running (max, sum of exp(z - max)) of one row; lse = max + log(sum). A row of -inf gives lse = -inf.
template <typename A>
struct OnlineLSE {
  A max = -std::numeric_limits<A>::infinity();
  A sum = 0;
  A lse() const { return max + std::log(sum); }
};

// max(x[0:n]) (the caller scales it: multiplying by a positive scale commutes with max).
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

// sum_j exp(x[j] * scale - shift).
template <typename T>
inline acc_t<T> row_sum_exp(const T* x, int64_t n, acc_t<T> scale, acc_t<T> shift) {
  using A = acc_t<T>;
  using Vec = Vectorized<A>;
  const Vec vscale(scale), vneg(-shift);
  Vec s0(A(0)), s1(A(0)), a, b;
  int64_t j = 0;
  for (; j + kStep<T> <= n; j += kStep<T>) {
    load2(x + j, a, b);
    s0 = s0 + vexp(at::vec::fmadd(a, vscale, vneg));
    s1 = s1 + vexp(at::vec::fmadd(b, vscale, vneg));
  }
  A s = at::vec::vec_reduce_all<A>([](Vec& p, Vec& q) { return p + q; }, s0 + s1);
  for (; j < n; ++j) s += std::exp(static_cast<A>(x[j]) * scale - shift);
  return s;
}

// Folds the row segment x[0:n] * scale into `state`, in L1-sized blocks (one read from memory).
template <typename T>
inline void online_lse_update(const T* x, int64_t n, acc_t<T> scale, OnlineLSE<acc_t<T>>& state) {
  using A = acc_t<T>;
  constexpr int64_t kBlock = 4096;  // 16 KiB of float: max pass, then exp pass from L1
  for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
    const int64_t len = std::min(kBlock, n - j0);
    const A block_max = row_max(x + j0, len) * scale;
    const A new_max = std::max(state.max, block_max);
    if (new_max == -std::numeric_limits<A>::infinity()) continue;  // only -inf so far: contributes 0
    const A block_sum = row_sum_exp(x + j0, len, scale, new_max);
    state.sum = state.sum * std::exp(state.max - new_max) + block_sum;
    state.max = new_max;
  }
}

// out[j] = coef * p_j with p_j = exp(x[j] * scale - lse), rounded to T once; returns sum_j p_j. out may alias x.
template <typename T>
inline acc_t<T> softmax_scaled(const T* x, int64_t n, acc_t<T> scale, acc_t<T> lse, acc_t<T> coef, T* out) {
  using A = acc_t<T>;
  using Vec = Vectorized<A>;
  const Vec vscale(scale), vneg(-lse), vcoef(coef);
  Vec s0(A(0)), s1(A(0)), a, b;
  int64_t j = 0;
  for (; j + kStep<T> <= n; j += kStep<T>) {
    load2(x + j, a, b);
    const Vec pa = vexp(at::vec::fmadd(a, vscale, vneg)), pb = vexp(at::vec::fmadd(b, vscale, vneg));
    s0 = s0 + pa;
    s1 = s1 + pb;
    store2(out + j, vcoef * pa, vcoef * pb);
  }
  A s = at::vec::vec_reduce_all<A>([](Vec& p, Vec& q) { return p + q; }, s0 + s1);
  for (; j < n; ++j) {
    const A p = std::exp(static_cast<A>(x[j]) * scale - lse);
    s += p;
    out[j] = static_cast<T>(coef * p);
  }
  return s;
}

// One row of d(g_logp * log p_label + g_lse * lse) / dx for z = x * scale, p = softmax(z):
//   out[j] = (g_lse - g_logp) * p_j * scale (j != label),  out[label] = (g_lse * p_label + g_logp * q) * scale,
// with q = sum_{j != label} p_j standing for 1 - p_label: computed as 1 - p_label it would lose every digit
// when p_label is close to 1 (and the saved float32 lse shifts all p_j by the same relative error, which q
// keeps relative). Everything in acc_t<T>; each output rounded to T once.
template <typename T>
inline void softmax_grad_row(const T* x, int64_t n, acc_t<T> scale, acc_t<T> lse, acc_t<T> g_logp,
                             acc_t<T> g_lse, int64_t label, T* out) {
  using A = acc_t<T>;
  const A coef = (g_lse - g_logp) * scale;
  const A others = softmax_scaled(x, label, scale, lse, coef, out) +
                   softmax_scaled(x + label + 1, n - label - 1, scale, lse, coef, out + label + 1);
  const A p_label = std::exp(static_cast<A>(x[label]) * scale - lse);
  out[label] = static_cast<T>((g_lse * p_label + g_logp * others) * scale);
}

}  // namespace lit_align::cpu
