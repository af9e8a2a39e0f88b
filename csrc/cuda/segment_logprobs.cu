// segment_logprobs on CUDA: per-segment sums (or means) of token log-probs for padded or packed batches.
//
// Forward: each thread walks kChunk consecutive tokens and flushes one atomicAdd per run of equal segment ids
// (packed sequences are runs, so a chunk costs about one atomic, not kChunk) into float32 (float64) sums and
// int32 counts; a second kernel divides for the mean and rounds to the output dtype.
// Backward: a gather, grad[segment] (/ count for the mean). Ids outside [0, num_segments) (-1: excluded) are
// skipped on the device; the Python layer reports them as errors before calling.
#include "kernels.h"
#include "rows.cuh"

namespace lit_align::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kChunk = 16;

template <typename S>
__device__ __forceinline__ void flush_run(int64_t segment, int64_t num_segments, S sum, int count, S* sums,
                                          int32_t* counts) {
  if (segment < 0 || segment >= num_segments || count == 0) return;
  if (sums != nullptr) atomicAdd(sums + segment, sum);
  if (counts != nullptr) atomicAdd(counts + segment, count);
}

// values may be null (counts only); sums / counts may be null (not wanted).
template <typename T>
__global__ void __launch_bounds__(kThreads)
segment_accumulate_kernel(const T* __restrict__ values, const int64_t* __restrict__ segment_ids, int64_t n,
                          int64_t num_segments, StatT<T>* __restrict__ sums, int32_t* __restrict__ counts) {
  using S = StatT<T>;
  const int64_t start = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * kChunk;
  if (start >= n) return;
  const int64_t end = start + kChunk < n ? start + kChunk : n;
  int64_t segment = -1;
  S sum = S(0);
  int count = 0;
  for (int64_t i = start; i < end; ++i) {
    const int64_t id = segment_ids[i];
    if (id != segment) {
      flush_run(segment, num_segments, sum, count, sums, counts);
      segment = id;
      sum = S(0);
      count = 0;
    }
    if (values != nullptr) sum += to_stat<S>(values[i]);
    ++count;
  }
  flush_run(segment, num_segments, sum, count, sums, counts);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
segment_finalize_kernel(const StatT<T>* __restrict__ sums, const int32_t* __restrict__ counts, int64_t num_segments,
                        bool mean, T* __restrict__ out) {
  using S = StatT<T>;
  const int64_t s = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (s >= num_segments) return;
  out[s] = from_stat<T>(mean ? sums[s] / static_cast<S>(counts[s] > 1 ? counts[s] : 1) : sums[s]);
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

template <typename T>
void segment_logprobs_forward(const T* values, const int64_t* segment_ids, int64_t n, int64_t num_segments,
                              bool mean, T* out, StatT<T>* sum_ws, int32_t* count_ws, cudaStream_t stream) {
  if (num_segments == 0) return;
  cudaMemsetAsync(sum_ws, 0, num_segments * sizeof(StatT<T>), stream);
  if (mean) cudaMemsetAsync(count_ws, 0, num_segments * sizeof(int32_t), stream);
  if (n > 0) {
    segment_accumulate_kernel<T><<<blocks_for((n + kChunk - 1) / kChunk), kThreads, 0, stream>>>(
        values, segment_ids, n, num_segments, sum_ws, mean ? count_ws : nullptr);
  }
  segment_finalize_kernel<T><<<blocks_for(num_segments), kThreads, 0, stream>>>(sum_ws, count_ws, num_segments, mean,
                                                                               out);
}

template <typename T>
void segment_logprobs_backward(const T* grad, const int64_t* segment_ids, int64_t n, int64_t num_segments, bool mean,
                               T* grad_values, int32_t* count_ws, cudaStream_t stream) {
  if (n == 0) return;
  if (mean && num_segments > 0) {
    cudaMemsetAsync(count_ws, 0, num_segments * sizeof(int32_t), stream);
    segment_accumulate_kernel<T><<<blocks_for((n + kChunk - 1) / kChunk), kThreads, 0, stream>>>(
        nullptr, segment_ids, n, num_segments, nullptr, count_ws);
  }
  segment_gather_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(grad, segment_ids, n, num_segments,
                                                                    mean ? count_ws : nullptr, grad_values);
}

#define LIT_ALIGN_INSTANTIATE(T)                                                                               \
  template void segment_logprobs_forward<T>(const T*, const int64_t*, int64_t, int64_t, bool, T*, StatT<T>*,   \
                                            int32_t*, cudaStream_t);                                           \
  template void segment_logprobs_backward<T>(const T*, const int64_t*, int64_t, int64_t, bool, T*, int32_t*,   \
                                             cudaStream_t);
LIT_ALIGN_FOR_EACH_DTYPE(LIT_ALIGN_INSTANTIATE)
#undef LIT_ALIGN_INSTANTIATE

}  // namespace lit_align::cuda
