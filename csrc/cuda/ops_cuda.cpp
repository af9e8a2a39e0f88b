// CUDA kernels for the lit_align::* ops (schemas and conventions: csrc/ops.cpp), registered with
// TORCH_LIBRARY_IMPL(lit_align, CUDA, m): token_logprobs, segment_logprobs and preference_loss with their
// backwards. linear_token_logprobs lives in linear_cuda.cpp. Each function checks its inputs (ValueError on bad
// input), dispatches on dtype and launches the kernels of csrc/cuda/*.cu on the current stream.
// Output shapes and dtypes match the fake kernels in lit_align/ops/_library.py; outputs are contiguous.
#include <algorithm>
#include <iterator>

#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <torch/library.h>

#include "binding.h"

namespace lit_align::cuda {
namespace {

// ---- token_logprobs ----------------------------------------------------------------------------------------
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

// logits (N, V), labels (N,) -> (logp, row_max, log_sum) (N,) each in float32 (float64 for float64 logits)
std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_cuda(const at::Tensor& logits_in,
                                                                   const at::Tensor& labels_in, int64_t ignore_index,
                                                                   double temperature) {
  TORCH_CHECK_VALUE(logits_in.dim() == 2, "logits must be (N, V), got shape ", logits_in.sizes());
  check_float(logits_in, "logits");
  check_temperature(temperature);
  const auto device = logits_in.device();
  check_device(logits_in, "logits", device);
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
  TORCH_CHECK_VALUE(logits_in.dim() == 2, "logits must be (N, V), got shape ", logits_in.sizes());
  check_float(logits_in, "logits");
  check_temperature(temperature);
  const auto device = logits_in.device();
  check_device(logits_in, "logits", device);
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

// ---- segment_logprobs --------------------------------------------------------------------------------------
// token_logp (N,), segment_ids (N,) in [-1, S) -> (S,) in token_logp's dtype
at::Tensor segment_logprobs_cuda(const at::Tensor& values_in, const at::Tensor& ids_in, int64_t num_segments,
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
  LIT_ALIGN_DISPATCH(values.scalar_type(), "lit_align::segment_logprobs", [&] {
    segment_logprobs_forward<T>(in<scalar_t>(values), order.const_data_ptr<int64_t>(),
                                starts.const_data_ptr<int64_t>(), counts.const_data_ptr<int32_t>(), num_segments,
                                mean, out<scalar_t>(result), stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return result;
}

// grad (S,) -> grad_token_logp (N,) in grad's dtype
at::Tensor segment_logprobs_backward_cuda(const at::Tensor& grad_in, const at::Tensor& ids_in, int64_t num_segments,
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
  LIT_ALIGN_DISPATCH(grad.scalar_type(), "lit_align::segment_logprobs_backward", [&] {
    segment_logprobs_backward<T>(in<scalar_t>(grad), ids.const_data_ptr<int64_t>(), n, num_segments, mean,
                                 out<scalar_t>(grad_values), counts.mutable_data_ptr<int32_t>(), stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_values;
}

// ---- preference_loss ---------------------------------------------------------------------------------------
LossType parse_loss_type(c10::string_view name) {
  static const std::pair<const char*, LossType> kTypes[] = {
      {"sigmoid", LossType::kSigmoid}, {"robust", LossType::kRobust}, {"hinge", LossType::kHinge},
      {"ipo", LossType::kIpo},         {"bt", LossType::kBt},         {"simpo", LossType::kSimpo}};
  const auto* found = std::find_if(std::begin(kTypes), std::end(kTypes),
                                   [&](const auto& entry) { return name == entry.first; });
  TORCH_CHECK_VALUE(found != std::end(kTypes), "loss_type='", std::string(name),
                    "'; expected one of sigmoid, robust, hinge, ipo, bt, simpo");
  return found->second;
}

// The pair inputs, checked and converted to policy_chosen's dtype; refs stay undefined when absent.
struct PairInputs {
  at::Tensor pc, pr, rc, rr, eps;
  LossType type;
};

PairInputs pair_inputs(const at::Tensor& pc_in, const at::Tensor& pr_in, const std::optional<at::Tensor>& rc_in,
                       const std::optional<at::Tensor>& rr_in, const at::Tensor& eps_in, double beta,
                       c10::string_view loss_type) {
  TORCH_CHECK_VALUE(pc_in.dim() == 1, "policy_chosen must be 1-d (B,), got shape ", pc_in.sizes());
  check_float(pc_in, "policy_chosen");
  const auto device = pc_in.device();
  check_device(pc_in, "policy_chosen", device);
  const int64_t n = pc_in.size(0);
  const auto dtype = pc_in.scalar_type();
  PairInputs p;
  p.type = parse_loss_type(loss_type);
  TORCH_CHECK_VALUE(p.type == LossType::kBt || beta > 0, "beta must be > 0, got ", beta);
  p.pc = pc_in.contiguous();
  p.pr = vector_arg(pr_in, "policy_rejected", n, dtype, device);
  if (rc_in.has_value() && rc_in->defined()) p.rc = vector_arg(*rc_in, "ref_chosen", n, dtype, device);
  if (rr_in.has_value() && rr_in->defined()) p.rr = vector_arg(*rr_in, "ref_rejected", n, dtype, device);
  const auto eps = eps_in.numel() == 1 ? eps_in.reshape({1}).expand({n}) : eps_in;
  p.eps = vector_arg(eps, "label_smoothing", n, dtype, device);
  return p;
}

template <typename scalar_t>
PreferenceArgs<typename Native<scalar_t>::type> kernel_args(const PairInputs& p, double beta, double gamma) {
  return {in<scalar_t>(p.pc), in<scalar_t>(p.pr), in_or_null<scalar_t>(p.rc), in_or_null<scalar_t>(p.rr),
          in<scalar_t>(p.eps), p.pc.size(0), beta, gamma, p.type};
}

// (B,) each -> (loss, chosen_rewards, rejected_rewards), (B,) each in policy_chosen's dtype
std::tuple<at::Tensor, at::Tensor, at::Tensor> preference_loss_cuda(
    const at::Tensor& pc, const at::Tensor& pr, const std::optional<at::Tensor>& rc,
    const std::optional<at::Tensor>& rr, const at::Tensor& eps, double beta, c10::string_view loss_type, double gamma) {
  const PairInputs p = pair_inputs(pc, pr, rc, rr, eps, beta, loss_type);
  const c10::cuda::CUDAGuard guard(p.pc.device());
  auto loss = at::empty_like(p.pc);
  auto chosen = at::empty_like(p.pc);
  auto rejected = at::empty_like(p.pc);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  LIT_ALIGN_DISPATCH(p.pc.scalar_type(), "lit_align::preference_loss", [&] {
    preference_loss_forward<T>(kernel_args<scalar_t>(p, beta, gamma), out<scalar_t>(loss), out<scalar_t>(chosen),
                               out<scalar_t>(rejected), stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {loss, chosen, rejected};
}

// -> d loss / d margin (B,)
at::Tensor preference_loss_backward_cuda(const at::Tensor& grad_loss_in, const at::Tensor& pc,
                                         const at::Tensor& pr, const std::optional<at::Tensor>& rc,
                                         const std::optional<at::Tensor>& rr, const at::Tensor& eps, double beta,
                                         c10::string_view loss_type, double gamma) {
  const PairInputs p = pair_inputs(pc, pr, rc, rr, eps, beta, loss_type);
  const c10::cuda::CUDAGuard guard(p.pc.device());
  const auto grad_loss = vector_arg(grad_loss_in, "grad_loss", p.pc.size(0), p.pc.scalar_type(), p.pc.device());
  auto grad_margin = at::empty_like(p.pc);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  LIT_ALIGN_DISPATCH(p.pc.scalar_type(), "lit_align::preference_loss_backward", [&] {
    preference_loss_backward<T>(kernel_args<scalar_t>(p, beta, gamma), in<scalar_t>(grad_loss),
                                out<scalar_t>(grad_margin), stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_margin;
}

}  // namespace
}  // namespace lit_align::cuda

TORCH_LIBRARY_IMPL(lit_align, CUDA, m) {
  m.impl("token_logprobs", &lit_align::cuda::token_logprobs_cuda);
  m.impl("token_logprobs_backward", &lit_align::cuda::token_logprobs_backward_cuda);
  m.impl("segment_logprobs", &lit_align::cuda::segment_logprobs_cuda);
  m.impl("segment_logprobs_backward", &lit_align::cuda::segment_logprobs_backward_cuda);
  m.impl("preference_loss", &lit_align::cuda::preference_loss_cuda);
  m.impl("preference_loss_backward", &lit_align::cuda::preference_loss_backward_cuda);
}
