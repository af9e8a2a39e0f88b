// Rowwise plumbing shared by the token and tile kernels:
//   * dtype conversion through the explicit intrinsics (torch builds with __CUDA_NO_HALF/BFLOAT16_CONVERSIONS__);
//   * Pack<T>: 16 bytes of T, one vectorised load/store;
//   * visit_row: a row of any length and alignment read as groups of Pack<T>::kSize columns counted from the
//     row's first column (kUnroll groups in flight per thread) and a tail. Which thread folds which column, and in
//     which order, depends on the row's length only, never on its address: a row gives bitwise the same
//     statistics wherever it sits in the batch (batch invariance by construction). A 16-byte aligned row
//     (any row when V * sizeof(T) is a multiple of 16, e.g. V = 32000 or 128256) loads each group in one
//     vector load; other rows load the same groups element by element;
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

// True when p sits on a 16-byte boundary: column groups of its row line up with 16-byte packs.
template <typename T>
__device__ __forceinline__ bool pack_aligned(const T* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

// Stores y[0:N) at dst: one 16-byte store for a full, aligned pack, element stores otherwise.
template <typename T, int N>
__device__ __forceinline__ void store_elems(T* dst, const T (&y)[N], bool aligned) {
  if constexpr (N == Pack<T>::kSize) {
    if (aligned) {
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

// Group g of a row: columns [g * K, g * K + K), one vector load when the row is aligned.
template <typename T>
__device__ __forceinline__ Pack<T> load_group(const T* row, int64_t g, bool aligned) {
  constexpr int K = Pack<T>::kSize;
  if (aligned) return reinterpret_cast<const Pack<T>*>(row)[g];
  Pack<T> p;
#pragma unroll
  for (int k = 0; k < K; ++k) p.v[k] = row[g * K + k];
  return p;
}

// Calls f(j0, const T* x, Count<n>) over row[0:n) split among `size` threads (this one is `rank`): x points at
// n = Pack<T>::kSize consecutive values starting at column j0 = g * kSize (group g = rank, rank + size, ...), or
// at one value of the tail (columns past the last whole group, rank-strided). Each thread issues kUnroll
// independent loads before using them (2 for float64, whose exp2/log2 need the registers). The split and each
// thread's order depend on n, rank and size only (see the file comment).
template <typename T, typename F>
__device__ __forceinline__ void visit_row(const T* row, int64_t n, int rank, int size, F&& f) {
  constexpr int K = Pack<T>::kSize;
  constexpr int kUnroll = sizeof(T) >= 8 ? 2 : 4;
  const bool aligned = pack_aligned(row);
  const int64_t num_groups = n / K;
  int64_t i = rank;
  for (; i + (kUnroll - 1) * static_cast<int64_t>(size) < num_groups; i += kUnroll * static_cast<int64_t>(size)) {
    Pack<T> p[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) p[u] = load_group(row, i + u * size, aligned);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) f((i + u * size) * K, p[u].v, Count<K>{});
  }
  for (; i < num_groups; i += size) {
    const Pack<T> p = load_group(row, i, aligned);
    f(i * K, p.v, Count<K>{});
  }
  for (int64_t j = num_groups * K + rank; j < n; j += size) {
    const T x = row[j];
    f(j, &x, Count<1>{});
  }
}

// Writes `value` to row[0:n) with the same groups / tail split.
template <typename T>
__device__ __forceinline__ void fill_row(T* row, int64_t n, int rank, int size, T value) {
  constexpr int K = Pack<T>::kSize;
  const bool aligned = pack_aligned(row);
  T y[K];
#pragma unroll
  for (int k = 0; k < K; ++k) y[k] = value;
  const int64_t num_groups = n / K;
  for (int64_t i = rank; i < num_groups; i += size) store_elems(row + i * K, y, aligned);
  for (int64_t j = num_groups * K + rank; j < n; j += size) row[j] = value;
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
