// lit_align::preference_loss and its backward on CUDA (schemas and conventions: csrc/ops.cpp), registered with
// TORCH_LIBRARY_IMPL(lit_align, CUDA, m).
// Each function checks its inputs (ValueError on bad input), dispatches on dtype and launches the kernels of
// csrc/cuda/preference_loss.cu on the current stream. Output shapes and dtypes match the fake kernels in
// lit_align/ops/_library.py; outputs are contiguous.
#include <algorithm>
#include <iterator>

#include <torch/library.h>

#include "binding.h"

namespace lit_align::cuda {
namespace {

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
  m.impl("preference_loss", &lit_align::cuda::preference_loss_cuda);
  m.impl("preference_loss_backward", &lit_align::cuda::preference_loss_backward_cuda);
}
