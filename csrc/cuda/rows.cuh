// Rowwise plumbing shared by the token and tile kernels:
//   * dtype conversion through the explicit intrinsics (torch builds with __CUDA_NO_HALF/BFLOAT16_CONVERSIONS__);
//   * Pack<T>: 16 bytes of T, one vectorised load/store;
//   * visit_row: a row of any length and alignment read as an unaligned head, 16-byte packs (kUnroll packs in
//     flight per thread) and a tail, so rows of odd vocabularies still stream at full width;
//   * RowGroup / row_launch: a warp per short row (8 rows per 256-thread block) or a block per long row.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "reduce.cuh"

namespace lit_align::cuda {

// ---- dtype conversion ------------------------------------------------------------------------------------
template <typename S, typename T>
__device__ __forceinline__ S to_stat(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return static_cast<S>(__bfloat162float(x));
  } else if constexpr (std::is_same_v<T, __half>) {
    return static_cast<S>(__half2float(x));
  } else {
    return static_cast<S>(x);
  }
}

template <typename T, typename S>
__device__ __forceinline__ T from_stat(S x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16(static_cast<float>(x));  // round to nearest even
  } else if constexpr (std::is_same_v<T, __half>) {
    return __float2half(static_cast<float>(x));
  } else {
    return static_cast<T>(x);
  }
}

// ---- 16-byte packs ---------------------------------------------------------------------------------------
template <typename T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / static_cast<int>(sizeof(T));
  T v[kSize];
};

template <int N>
using Count = std::integral_constant<int, N>;

// Leading elements of p before a 16-byte boundary (p is T-aligned), at most n.
template <typename T>
__device__ __forceinline__ int64_t head_length(const T* p, int64_t n) {
  const int mis = static_cast<int>((reinterpret_cast<uintptr_t>(p) & 15) / sizeof(T));
  const int64_t head = mis == 0 ? 0 : Pack<T>::kSize - mis;
  return head < n ? head : n;
}

// True when a and b sit at the same offset from a 16-byte boundary: packs of one line up with packs of the other.
template <typename A, typename B>
__device__ __forceinline__ bool same_alignment(const A* a, const B* b) {
  return ((reinterpret_cast<uintptr_t>(a) ^ reinterpret_cast<uintptr_t>(b)) & 15) == 0;
}

// Stores y[0:N) at dst: one 16-byte store for a full, aligned pack, element stores otherwise.
template <typename T, int N>
__device__ __forceinline__ void store_elems(T* dst, const T (&y)[N], bool pack_aligned) {
  if constexpr (N == Pack<T>::kSize) {
    if (pack_aligned) {
      Pack<T> p;
#pragma unroll
      for (int k = 0; k < N; ++k) p.v[k] = y[k];
      *reinterpret_cast<Pack<T>*>(dst) = p;
      return;
    }
  }
#pragma unroll
  for (int k = 0; k < N; ++k) dst[k] = y[k];
}

// Calls f(j0, const T* x, Count<n>) over row[0:n) split among `size` threads (this one is `rank`):
// x points at n = Pack<T>::kSize consecutive values starting at column j0 (16-byte aligned in the row) or at
// one value (head and tail). Each thread issues kUnroll independent 16-byte loads before using them (2 for
// float64, whose exp2/log2 need the registers).
template <typename T, typename F>
__device__ __forceinline__ void visit_row(const T* row, int64_t n, int rank, int size, F&& f) {
  constexpr int K = Pack<T>::kSize;
  constexpr int kUnroll = sizeof(T) >= 8 ? 2 : 4;
  const int64_t head = head_length(row, n);
  if (rank < head) {
    const T x = row[rank];
    f(static_cast<int64_t>(rank), &x, Count<1>{});
  }
  const Pack<T>* packs = reinterpret_cast<const Pack<T>*>(row + head);
  const int64_t num_packs = (n - head) / K;
  int64_t i = rank;
  for (; i + (kUnroll - 1) * static_cast<int64_t>(size) < num_packs; i += kUnroll * static_cast<int64_t>(size)) {
    Pack<T> p[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) p[u] = packs[i + u * size];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) f(head + (i + u * size) * K, p[u].v, Count<K>{});
  }
  for (; i < num_packs; i += size) {
    const Pack<T> p = packs[i];
    f(head + i * K, p.v, Count<K>{});
  }
  for (int64_t j = head + num_packs * K + rank; j < n; j += size) {
    const T x = row[j];
    f(j, &x, Count<1>{});
  }
}

// Writes `value` to row[0:n) with the same head / packs / tail split.
template <typename T>
__device__ __forceinline__ void fill_row(T* row, int64_t n, int rank, int size, T value) {
  constexpr int K = Pack<T>::kSize;
  const int64_t head = head_length(row, n);
  if (rank < head) row[rank] = value;
  Pack<T> p;
#pragma unroll
  for (int k = 0; k < K; ++k) p.v[k] = value;
  Pack<T>* packs = reinterpret_cast<Pack<T>*>(row + head);
  const int64_t num_packs = (n - head) / K;
  for (int64_t i = rank; i < num_packs; i += size) packs[i] = p;
  for (int64_t j = head + num_packs * K + rank; j < n; j += size) row[j] = value;
}

// ---- rows -> threads -------------------------------------------------------------------------------------
constexpr int kMaxRowThreads = 512;
constexpr int kWarpRowsPerBlock = 8;

// The most threads a rowwise kernel is launched with (its __launch_bounds__).
constexpr int row_threads(bool warp_per_row) { return warp_per_row ? 32 * kWarpRowsPerBlock : kMaxRowThreads; }

// Which row this thread serves and how that row's threads all-reduce.
template <bool kWarpPerRow>
struct RowGroup {
  __device__ static int64_t row() {
    return kWarpPerRow ? static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32 : blockIdx.x;
  }
  __device__ static int rank() { return kWarpPerRow ? threadIdx.x % 32 : threadIdx.x; }
  __device__ static int size() { return kWarpPerRow ? 32 : blockDim.x; }
  // Every thread of the row must call it (block-per-row: the whole block, with no thread returned early).
  template <typename V, typename Op>
  __device__ static V all_reduce(V v, Op op) {
    if constexpr (kWarpPerRow) {
      return warp_all_reduce(v, op);
    } else {
      return block_all_reduce(v, op);
    }
  }
};

struct RowLaunch {
  bool warp_per_row;
  unsigned grid;
  unsigned block;
};

// A warp per row while a row is at most 8 packs per lane; otherwise a block per row, 64..512 threads, about
// 8 or more packs per thread.
inline RowLaunch row_launch(int64_t rows, int64_t cols, int elem_bytes) {
  const int64_t packs = (cols * elem_bytes + 15) / 16;
  if (packs <= 32 * 8) {
    return {true, static_cast<unsigned>((rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock),
            32u * kWarpRowsPerBlock};
  }
  int threads = 64;
  while (threads < kMaxRowThreads && threads * 8 < packs) threads *= 2;
  return {false, static_cast<unsigned>(rows), static_cast<unsigned>(threads)};
}

}  // namespace lit_align::cuda
