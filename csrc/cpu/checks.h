// Input checks shared by the CPU kernels. Python validates before calling, but a direct
// torch.ops.lit_align.* call must also get a clear ValueError (TORCH_CHECK_VALUE) instead of reading
// out of bounds. Each message names the argument, what was expected and what was received.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace lit_align::cpu {

inline void check_float(const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.is_floating_point(), name, " must be a floating-point tensor, got ", t.scalar_type());
}

inline void check_1d(const char* name, const at::Tensor& t, int64_t n) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, name, " must have shape (", n, ",), got ", t.sizes());
}

inline void check_temperature(double temperature) {
  TORCH_CHECK_VALUE(temperature > 0, "temperature must be > 0, got ", temperature);
}

// The statistics dtype of an input: float64 for float64, float32 otherwise.
inline at::ScalarType acc_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// labels [n] integer -> contiguous int64, each checked to lie in [0, vocab) or equal ignore_index.
inline at::Tensor checked_labels(const at::Tensor& labels, int64_t n, int64_t vocab, int64_t ignore_index) {
  TORCH_CHECK_VALUE(!labels.is_floating_point() && !labels.is_complex() && labels.scalar_type() != at::kBool,
                    "labels must be an integer tensor, got ", labels.scalar_type());
  check_1d("labels", labels, n);
  at::Tensor out = labels.to(at::kLong).contiguous();
  const int64_t* y = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK_VALUE(y[i] == ignore_index || (y[i] >= 0 && y[i] < vocab), "labels[", i, "] = ", y[i],
                      " is outside the vocabulary [0, ", vocab, ") and is not ignore_index (", ignore_index, ")");
  }
  return out;
}

// Indices of the rows whose label is not ignore_index (labels already checked, int64 contiguous).
inline std::vector<int64_t> kept_rows(const at::Tensor& labels, int64_t ignore_index) {
  const int64_t* y = labels.data_ptr<int64_t>();
  std::vector<int64_t> rows;
  rows.reserve(labels.numel());
  for (int64_t i = 0; i < labels.numel(); ++i) {
    if (y[i] != ignore_index) rows.push_back(i);
  }
  return rows;
}

}  // namespace lit_align::cpu
