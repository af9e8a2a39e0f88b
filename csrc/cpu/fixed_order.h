// Fixed-order matrix products for the batch-invariant mode of linear_token_logprobs (CPU).
//
// A BLAS GEMM picks its blocking, its kernels and its thread split from the shapes (and MKL also from the
// memory alignment), so a row's logits can change bitwise with the number of rows next to it. These two
// register-blocked products instead compute every output element by one fixed sequence of float operations,
// whatever the number of rows, a row's position among them, the thread that runs it or the alignment:
//   * fixed_order_logits:     out[i, j] = bias[j] + dot(h[i, :], w[j, :]): lane l of a Vectorized<A>
//     accumulator sums the k = l (mod L) products with fused multiply-adds in k order, the lanes are reduced by
//     vec_reduce_all, then the k >= H - H % L tail is added in k order (std::fma), then the bias;
//   * fixed_order_accumulate: out[i, :] += sum_j d[i, j] * w[j, :], each element updated by one fused
//     multiply-add per j in ascending j (a vector lane and std::fma round alike: both are exactly rounded).
// Blocks of 4 rows x 4 columns (logits) or 4 rows x 4 vectors (accumulate) keep the operands in registers; the
// edge blocks run the same per-element sequence. Inputs are float or double, contiguous and row-major.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <cstdint>

namespace lit_align::cpu {

namespace fixed_order_detail {

using at::vec::Vectorized;

// out[i * ldo + j] for i < R, j < C: the rows h + i * H and the columns w + j * H.
template <typename A, int R, int C>
inline void logits_block(const A* h, const A* w, int64_t H, const A* bias, A* out, int64_t ldo) {
  using Vec = Vectorized<A>;
  constexpr int64_t L = Vec::size();
  Vec acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = Vec(A(0));
  }
  const int64_t kv = H - H % L;
  for (int64_t k = 0; k < kv; k += L) {
    Vec a[R], b[C];
    for (int r = 0; r < R; ++r) a[r] = Vec::loadu(h + r * H + k);
    for (int c = 0; c < C; ++c) b[c] = Vec::loadu(w + c * H + k);
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) acc[r][c] = at::vec::fmadd(a[r], b[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      A s = at::vec::vec_reduce_all<A>([](Vec& x, Vec& y) { return x + y; }, acc[r][c]);
      for (int64_t k = kv; k < H; ++k) s = std::fma(h[r * H + k], w[c * H + k], s);
      out[r * ldo + c] = bias == nullptr ? s : s + bias[c];
    }
  }
}

// R rows of h times the columns [0, cols) of w.
template <typename A, int R>
inline void logits_rows(const A* h, const A* w, int64_t cols, int64_t H, const A* bias, A* out, int64_t ldo) {
  int64_t j = 0;
  for (; j + 4 <= cols; j += 4) {
    logits_block<A, R, 4>(h, w + j * H, H, bias == nullptr ? nullptr : bias + j, out + j, ldo);
  }
  for (; j < cols; ++j) logits_block<A, R, 1>(h, w + j * H, H, bias == nullptr ? nullptr : bias + j, out + j, ldo);
}

// out[i, k0 : k0 + C * L) += sum_j d[i, j] * w[j, k0 : ...) for i < R.
template <typename A, int R, int C>
inline void accumulate_block(const A* d, int64_t ldd, int64_t cols, const A* w, int64_t H, A* out) {
  using Vec = Vectorized<A>;
  constexpr int64_t L = Vec::size();
  Vec acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = Vec::loadu(out + r * H + c * L);
  }
  for (int64_t j = 0; j < cols; ++j) {
    Vec b[C];
    for (int c = 0; c < C; ++c) b[c] = Vec::loadu(w + j * H + c * L);
    for (int r = 0; r < R; ++r) {
      const Vec a(d[r * ldd + j]);
      for (int c = 0; c < C; ++c) acc[r][c] = at::vec::fmadd(a, b[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c].store(out + r * H + c * L);
  }
}

template <typename A, int R>
inline void accumulate_rows(const A* d, int64_t ldd, int64_t cols, const A* w, int64_t H, A* out) {
  constexpr int64_t L = Vectorized<A>::size();
  int64_t k = 0;
  for (; k + 4 * L <= H; k += 4 * L) accumulate_block<A, R, 4>(d, ldd, cols, w + k, H, out + k);
  for (; k + L <= H; k += L) accumulate_block<A, R, 1>(d, ldd, cols, w + k, H, out + k);
  for (; k < H; ++k) {  // the tail columns of out, the same j order
    for (int r = 0; r < R; ++r) {
      A s = out[r * H + k];
      for (int64_t j = 0; j < cols; ++j) s = std::fma(d[r * ldd + j], w[j * H + k], s);
      out[r * H + k] = s;
    }
  }
}

}  // namespace fixed_order_detail

// out [rows, cols] (row stride ldo) = h [rows, H] @ w [cols, H].T (+ bias [cols], nullable), in a fixed order.
template <typename A>
void fixed_order_logits(const A* h, int64_t rows, const A* w, int64_t cols, int64_t H, const A* bias, A* out,
                        int64_t ldo) {
  using namespace fixed_order_detail;
  int64_t i = 0;
  for (; i + 4 <= rows; i += 4) logits_rows<A, 4>(h + i * H, w, cols, H, bias, out + i * ldo, ldo);
  for (; i < rows; ++i) logits_rows<A, 1>(h + i * H, w, cols, H, bias, out + i * ldo, ldo);
}

// out [rows, H] += d [rows, cols] (row stride ldd) @ w [cols, H], in a fixed order.
template <typename A>
void fixed_order_accumulate(const A* d, int64_t rows, int64_t ldd, const A* w, int64_t cols, int64_t H, A* out) {
  using namespace fixed_order_detail;
  int64_t i = 0;
  for (; i + 4 <= rows; i += 4) accumulate_rows<A, 4>(d + i * ldd, ldd, cols, w, H, out + i * H);
  for (; i < rows; ++i) accumulate_rows<A, 1>(d + i * ldd, ldd, cols, w, H, out + i * H);
}

}  // namespace lit_align::cpu
