// sequence_logprobs on CUDA: per-segment sums (or means) of token log-probs for padded or packed batches.
//
// Forward, deterministic and batch invariant (float atomics would add a segment's tokens in a different order on
// every run): the binding sorts the token indices by segment id (stable: token order within a segment) and counts
// each segment's tokens (int32 atomics: exact in any order); one warp per segment then sums its tokens, lane l
// taking tokens l, l + 32, ... in order, and reduces the lanes with a fixed butterfly, in float32 (float64), then
// divides for the mean and rounds to the output dtype once. A segment's score depends on its own tokens only.
// Backward: a gather, grad[segment] (/ count for the mean). Ids outside [0, num_segments) (-1: excluded) are
// skipped on the device; the Python layer reports them as errors before calling.
#include "kernels.h"
#include "rows.cuh"

namespace lit_align::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kChunk = 16;

__device__ __forceinline__ void flush_run(int64_t segment, int64_t num_segments, int count, int32_t* counts) {
  if (segment >= 0 && segment < num_segments && count > 0) atomicAdd(counts + segment, count);
}

// Each thread counts kChunk consecutive tokens and flushes one atomicAdd per run of equal segment ids (packed
// sequences are runs, so a chunk costs about one atomic, not kChunk).
__global__ void __launch_bounds__(kThreads)
segment_count_kernel(const int64_t* __restrict__ segment_ids, int64_t n, int64_t num_segments,
                     int32_t* __restrict__ counts) {
  const int64_t start = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * kChunk;
  if (start >= n) return;
  const int64_t end = start + kChunk < n ? start + kChunk : n;
  int64_t segment = -1;
  int count = 0;
  for (int64_t i = start; i < end; ++i) {
    const int64_t id = segment_ids[i];
    if (id != segment) {
      flush_run(segment, num_segments, count, counts);
      segment = id;
      count = 0;
    }
    ++count;
  }
  flush_run(segment, num_segments, count, counts);
}

// One warp per segment: values[order[start : start + count]] -> out[segment].
template <typename T>
__global__ void __launch_bounds__(kThreads)
segment_sum_kernel(const T* __restrict__ values, const int64_t* __restrict__ order, const int64_t* __restrict__ starts,
                   const int32_t* __restrict__ counts, int64_t num_segments, bool mean, T* __restrict__ out) {
  using S = StatT<T>;
  const int64_t segment = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32;
  if (segment >= num_segments) return;  // uniform over the warp
  const int lane = threadIdx.x % 32;
  const int64_t start = starts[segment];
  const int32_t count = counts[segment];
  S sum = S(0);
  for (int64_t k = lane; k < count; k += 32) sum += to_stat<S>(values[order[start + k]]);
  sum = warp_all_reduce(sum, [](S a, S b) { return a + b; });
  if (lane == 0) out[segment] = from_stat<T>(mean ? sum / static_cast<S>(count > 1 ? count : 1) : sum);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
segment_gather_kernel(const T* __restrict__ grad, const int64_t* __restrict__ segment_ids, int64_t n,
                      int64_t num_segments, const int32_t* __restrict__ counts, T* __restrict__ grad_values) {
  using S = StatT<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  const int64_t id = segment_ids[i];
  S g = S(0);
  if (id >= 0 && id < num_segments) {
    g = to_stat<S>(grad[id]);
    if (counts != nullptr) g /= static_cast<S>(counts[id] > 1 ? counts[id] : 1);
  }
  grad_values[i] = from_stat<T>(g);
}

unsigned blocks_for(int64_t items) { return static_cast<unsigned>((items + kThreads - 1) / kThreads); }

}  // namespace

void segment_counts(const int64_t* segment_ids, int64_t n, int64_t num_segments, int32_t* count_ws,
                    cudaStream_t stream) {
  if (num_segments == 0) return;
  cudaMemsetAsync(count_ws, 0, num_segments * sizeof(int32_t), stream);
  if (n > 0) {
    segment_count_kernel<<<blocks_for((n + kChunk - 1) / kChunk), kThreads, 0, stream>>>(segment_ids, n,
                                                                                         num_segments, count_ws);
  }
}

template <typename T>
void sequence_logprobs_forward(const T* values, const int64_t* order, const int64_t* starts, const int32_t* counts,
                               int64_t num_segments, bool mean, T* out, cudaStream_t stream) {
  if (num_segments == 0) return;
  segment_sum_kernel<T><<<blocks_for(num_segments * 32), kThreads, 0, stream>>>(values, order, starts, counts,
                                                                                num_segments, mean, out);
}

template <typename T>
void sequence_logprobs_backward(const T* grad, const int64_t* segment_ids, int64_t n, int64_t num_segments, bool mean,
                                T* grad_values, int32_t* count_ws, cudaStream_t stream) {
  if (n == 0) return;
  if (mean) segment_counts(segment_ids, n, num_segments, count_ws, stream);
  segment_gather_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(grad, segment_ids, n, num_segments,
                                                                    mean ? count_ws : nullptr, grad_values);
}

#define LIT_ALIGN_INSTANTIATE(T)                                                                                \
  template void sequence_logprobs_forward<T>(const T*, const int64_t*, const int64_t*, const int32_t*, int64_t, \
                                             bool, T*, cudaStream_t);                                           \
  template void sequence_logprobs_backward<T>(const T*, const int64_t*, int64_t, int64_t, bool, T*, int32_t*,   \
                                              cudaStream_t);
LIT_ALIGN_FOR_EACH_DTYPE(LIT_ALIGN_INSTANTIATE)
#undef LIT_ALIGN_INSTANTIATE

}  // namespace lit_align::cuda
