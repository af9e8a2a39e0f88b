// lit_align::token_logprobs and its backward on CUDA (schemas and conventions: csrc/ops.cpp), registered with
// TORCH_LIBRARY_IMPL(lit_align, CUDA, m).
// Each function checks its inputs (ValueError on bad input), dispatches on dtype and launches the kernels of
// csrc/cuda/token_logprobs.cu on the current stream. Output shapes and dtypes match the fake kernels in
// lit_align/ops/_library.py; outputs are contiguous.
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <torch/library.h>

#include "binding.h"

namespace lit_align::cuda {
namespace {

// The forward kernel marks rows with labels outside [0, V) (NaN output, first bad row in first_bad_row); one
// sync reads it back, except while a CUDA graph is being captured, where a sync is not allowed.
void raise_if_bad_label(const at::Tensor& first_bad_row, const at::Tensor& labels, int64_t vocab,
                        int64_t ignore_index) {
  if (c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None) return;
  const int64_t row = first_bad_row.item<int64_t>();
  if (row < labels.size(0)) {
    TORCH_CHECK_VALUE(false, bad_label_message(row, labels[row].item<int64_t>(), vocab, ignore_index));
  }
}

// logits (N, V) on a CUDA device, a floating dtype, and a positive temperature (ValueError otherwise).
void check_logits(const at::Tensor& logits, double temperature) {
  TORCH_CHECK_VALUE(logits.dim() == 2, "logits must be (N, V), got shape ", logits.sizes());
  check_float(logits, "logits");
  check_temperature(temperature);
  check_device(logits, "logits", logits.device());
}

// logits (N, V), labels (N,) -> (logp, row_max, log_sum) (N,) each in float32 (float64 for float64 logits)
std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_cuda(const at::Tensor& logits_in,
                                                                   const at::Tensor& labels_in, int64_t ignore_index,
                                                                   double temperature) {
  check_logits(logits_in, temperature);
  const auto device = logits_in.device();
  const c10::cuda::CUDAGuard guard(device);
  const auto logits = logits_in.contiguous();  // (N, V)
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const auto labels = index_arg(labels_in, "labels", rows, device);  // (N,)
  const auto stat = logits.options().dtype(stat_type(logits.scalar_type()));
  auto logp = at::empty({rows}, stat);
  auto row_max = at::empty({rows}, stat);
  auto log_sum = at::empty({rows}, stat);
  auto first_bad_row = at::full({1}, rows, labels.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  LIT_ALIGN_DISPATCH(logits.scalar_type(), "lit_align::token_logprobs", [&] {
    token_logprobs_forward<T>(in<scalar_t>(logits), labels.const_data_ptr<int64_t>(), rows, vocab, ignore_index,
                              temperature, out<S>(logp), out<S>(row_max), out<S>(log_sum),
                              first_bad_row.mutable_data_ptr<int64_t>(), stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (rows > 0) raise_if_bad_label(first_bad_row, labels, vocab, ignore_index);
  return {logp, row_max, log_sum};
}

// -> grad_logits (N, V) in logits' dtype
at::Tensor token_logprobs_backward_cuda(const at::Tensor& grad_logp_in, const at::Tensor& grad_log_sum_in,
                                        const at::Tensor& logits_in, const at::Tensor& labels_in,
                                        const at::Tensor& row_max_in, const at::Tensor& log_sum_in,
                                        int64_t ignore_index, double temperature) {
  check_logits(logits_in, temperature);
  const auto device = logits_in.device();
  const c10::cuda::CUDAGuard guard(device);
  const auto logits = logits_in.contiguous();  // (N, V)
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const auto stat = stat_type(logits.scalar_type());
  const auto labels = index_arg(labels_in, "labels", rows, device);
  const auto grad_logp = vector_arg(grad_logp_in, "grad_logp", rows, stat, device);
  const auto grad_log_sum = vector_arg(grad_log_sum_in, "grad_log_sum", rows, stat, device);
  const auto row_max = vector_arg(row_max_in, "row_max", rows, stat, device);
  const auto log_sum = vector_arg(log_sum_in, "log_sum", rows, stat, device);
  auto grad = at::empty({rows, vocab}, logits.options());  // (N, V)
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  LIT_ALIGN_DISPATCH(logits.scalar_type(), "lit_align::token_logprobs_backward", [&] {
    token_logprobs_backward<T>(in<scalar_t>(logits), labels.const_data_ptr<int64_t>(), in<S>(row_max),
                               in<S>(log_sum), in<S>(grad_logp), in<S>(grad_log_sum), rows, vocab, ignore_index,
                               temperature, out<scalar_t>(grad), stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad;
}

}  // namespace
}  // namespace lit_align::cuda

TORCH_LIBRARY_IMPL(lit_align, CUDA, m) {
  m.impl("token_logprobs", &lit_align::cuda::token_logprobs_cuda);
  m.impl("token_logprobs_backward", &lit_align::cuda::token_logprobs_backward_cuda);
}
