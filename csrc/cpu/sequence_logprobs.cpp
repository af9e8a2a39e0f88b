// CPU kernels for lit_align::sequence_logprobs and its backward (schemas: csrc/ops.cpp).
//
// Per-sequence sums (or means over the included tokens) of token log-probs in the packed segment form:
// segment_ids[N] in [-1, S), -1 marks excluded tokens (prompt, padding). One serial pass: N is the number of
// tokens, far cheaper than the log-probs that produced it. Sums accumulate in double.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <vector>

#include "checks.h"

namespace lit_align::cpu {
namespace {

// segment_ids [n] integer -> contiguous int64 in [-1, num_segments).
at::Tensor checked_segments(const at::Tensor& segment_ids, int64_t n, int64_t num_segments) {
  TORCH_CHECK_VALUE(num_segments >= 0, "num_segments must be >= 0, got ", num_segments);
  TORCH_CHECK_VALUE(!segment_ids.is_floating_point() && !segment_ids.is_complex(),
                    "segment_ids must be an integer tensor, got ", segment_ids.scalar_type());
  check_1d("segment_ids", segment_ids, n);
  at::Tensor ids = segment_ids.to(at::kLong).contiguous();
  const int64_t* s = ids.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK_VALUE(s[i] >= -1 && s[i] < num_segments, "segment_ids[", i, "] = ", s[i], " is outside [-1, ",
                      num_segments, ")");
  }
  return ids;
}

// Number of included tokens per segment, (S,).
std::vector<int64_t> segment_counts(const int64_t* ids, int64_t n, int64_t num_segments) {
  std::vector<int64_t> counts(num_segments, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] >= 0) ++counts[ids[i]];
  }
  return counts;
}

at::Tensor sequence_logprobs(const at::Tensor& token_logp_in, const at::Tensor& segment_ids, int64_t num_segments,
                             bool mean) {
  check_float("token_logp", token_logp_in);
  TORCH_CHECK_VALUE(token_logp_in.dim() == 1, "token_logp must be (N,), got ", token_logp_in.sizes());
  const int64_t n = token_logp_in.size(0);
  const at::Tensor ids = checked_segments(segment_ids, n, num_segments);
  const at::Tensor values = token_logp_in.contiguous();  // (N,)
  at::Tensor out = at::empty({num_segments}, values.options());  // (S,)
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, values.scalar_type(), "sequence_logprobs", [&] {
    const scalar_t* x = values.const_data_ptr<scalar_t>();
    const int64_t* s = ids.const_data_ptr<int64_t>();
    std::vector<double> sums(num_segments, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      if (s[i] >= 0) sums[s[i]] += static_cast<double>(x[i]);
    }
    const std::vector<int64_t> counts = segment_counts(s, n, num_segments);
    scalar_t* o = out.data_ptr<scalar_t>();
    for (int64_t j = 0; j < num_segments; ++j) {
      o[j] = static_cast<scalar_t>(mean && counts[j] > 0 ? sums[j] / static_cast<double>(counts[j]) : sums[j]);
    }
  });
  return out;
}

at::Tensor sequence_logprobs_backward(const at::Tensor& grad_in, const at::Tensor& segment_ids, int64_t num_segments,
                                      bool mean) {
  check_float("grad", grad_in);
  check_1d("grad", grad_in, num_segments);
  const int64_t n = segment_ids.dim() == 1 ? segment_ids.size(0) : -1;
  TORCH_CHECK_VALUE(n >= 0, "segment_ids must be (N,), got ", segment_ids.sizes());
  const at::Tensor ids = checked_segments(segment_ids, n, num_segments);
  const at::Tensor grad = grad_in.contiguous();  // (S,)
  at::Tensor out = at::empty({n}, grad.options());  // (N,)
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "sequence_logprobs_backward", [&] {
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const int64_t* s = ids.const_data_ptr<int64_t>();
    std::vector<double> per_token(num_segments);  // d segment / d token for each segment
    const std::vector<int64_t> counts = segment_counts(s, n, num_segments);
    for (int64_t j = 0; j < num_segments; ++j) {
      const double g_j = static_cast<double>(g[j]);
      per_token[j] = mean && counts[j] > 0 ? g_j / static_cast<double>(counts[j]) : g_j;
    }
    scalar_t* o = out.data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<scalar_t>(s[i] >= 0 ? per_token[s[i]] : 0.0);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(lit_align, CPU, m) {
  m.impl("sequence_logprobs", &sequence_logprobs);
  m.impl("sequence_logprobs_backward", &sequence_logprobs_backward);
}

}  // namespace lit_align::cpu
