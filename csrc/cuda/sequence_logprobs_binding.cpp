// lit_align::sequence_logprobs and its backward on CUDA (schemas and conventions: csrc/ops.cpp), registered with
// TORCH_LIBRARY_IMPL(lit_align, CUDA, m).
// Each function checks its inputs (ValueError on bad input), dispatches on dtype and launches the kernels of
// csrc/cuda/sequence_logprobs.cu on the current stream. Output shapes and dtypes match the fake kernels in
// lit_align/ops/_library.py; outputs are contiguous.
#include <torch/library.h>

#include "binding.h"

namespace lit_align::cuda {
namespace {

// token_logp (N,), segment_ids (N,) in [-1, S) -> (S,) in token_logp's dtype
at::Tensor sequence_logprobs_cuda(const at::Tensor& values_in, const at::Tensor& ids_in, int64_t num_segments,
                                  bool mean) {
  TORCH_CHECK_VALUE(values_in.dim() == 1, "token_logp must be 1-d (N,), got shape ", values_in.sizes());
  check_float(values_in, "token_logp");
  TORCH_CHECK_VALUE(num_segments >= 0, "num_segments must be >= 0, got ", num_segments);
  const auto device = values_in.device();
  check_device(values_in, "token_logp", device);
  const c10::cuda::CUDAGuard guard(device);
  const auto values = values_in.contiguous();
  const int64_t n = values.size(0);
  const auto ids = index_arg(ids_in, "segment_ids", n, device);
  auto result = at::empty({num_segments}, values.options());
  if (num_segments == 0) return result;
  // The tokens sorted by segment (stable: token order within a segment; excluded ids, -1, first) and each
  // segment's run [start, start + count) in that order: no host sync.
  const auto order = std::get<1>(at::sort(ids, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  auto counts = at::empty({num_segments}, values.options().dtype(at::kInt));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  segment_counts(ids.const_data_ptr<int64_t>(), n, num_segments, counts.mutable_data_ptr<int32_t>(), stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto counts64 = counts.to(at::kLong);
  const auto starts = (at::cumsum(counts64, 0) - counts64 + (n - counts64.sum())).contiguous();
  LIT_ALIGN_DISPATCH(values.scalar_type(), "lit_align::sequence_logprobs", [&] {
    sequence_logprobs_forward<T>(in<scalar_t>(values), order.const_data_ptr<int64_t>(),
                                starts.const_data_ptr<int64_t>(), counts.const_data_ptr<int32_t>(), num_segments,
                                mean, out<scalar_t>(result), stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return result;
}

// grad (S,) -> grad_token_logp (N,) in grad's dtype
at::Tensor sequence_logprobs_backward_cuda(const at::Tensor& grad_in, const at::Tensor& ids_in, int64_t num_segments,
                                           bool mean) {
  check_float(grad_in, "grad");
  const auto device = grad_in.device();
  check_device(grad_in, "grad", device);
  TORCH_CHECK_VALUE(ids_in.dim() == 1, "segment_ids must be 1-d (N,), got shape ", ids_in.sizes());
  const c10::cuda::CUDAGuard guard(device);
  const auto grad = vector_arg(grad_in, "grad", num_segments, grad_in.scalar_type(), device);
  const int64_t n = ids_in.size(0);
  const auto ids = index_arg(ids_in, "segment_ids", n, device);
  auto grad_values = at::empty({n}, grad.options());
  auto counts = at::empty({num_segments}, grad.options().dtype(at::kInt));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  LIT_ALIGN_DISPATCH(grad.scalar_type(), "lit_align::sequence_logprobs_backward", [&] {
    sequence_logprobs_backward<T>(in<scalar_t>(grad), ids.const_data_ptr<int64_t>(), n, num_segments, mean,
                                 out<scalar_t>(grad_values), counts.mutable_data_ptr<int32_t>(), stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_values;
}

}  // namespace
}  // namespace lit_align::cuda

TORCH_LIBRARY_IMPL(lit_align, CUDA, m) {
  m.impl("sequence_logprobs", &lit_align::cuda::sequence_logprobs_cuda);
  m.impl("sequence_logprobs_backward", &lit_align::cuda::sequence_logprobs_backward_cuda);
}
