// Helpers shared by the CUDA torch bindings (one <op>_binding.cpp per op): input checks that raise
// ValueError (TORCH_CHECK_VALUE), the at:: -> CUDA dtype map, typed raw pointers, and the dtype dispatch.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels.h"

namespace lit_align::cuda {

// at:: dtype -> the CUDA type the kernels are instantiated with (same bits).
template <typename T>
struct Native {
  using type = T;
};
template <>
struct Native<at::BFloat16> {
  using type = __nv_bfloat16;
};
template <>
struct Native<at::Half> {
  using type = __half;
};

template <typename T>
const typename Native<T>::type* in(const at::Tensor& t) {
  return reinterpret_cast<const typename Native<T>::type*>(t.const_data_ptr<T>());
}
template <typename T>
typename Native<T>::type* out(const at::Tensor& t) {
  return reinterpret_cast<typename Native<T>::type*>(t.mutable_data_ptr<T>());
}
template <typename T>
const typename Native<T>::type* in_or_null(const at::Tensor& t) {
  return t.defined() ? in<T>(t) : nullptr;
}

// Runs the lambda with scalar_t (at:: type), T (CUDA type) and S (statistics type) for every supported dtype.
#define LIT_ALIGN_DISPATCH(dtype, name, ...)                                      \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, name, [&] {    \
    using T [[maybe_unused]] = typename ::lit_align::cuda::Native<scalar_t>::type; \
    using S [[maybe_unused]] = ::lit_align::cuda::StatT<T>;                       \
    __VA_ARGS__();                                                                \
  })

inline at::ScalarType stat_type(at::ScalarType dtype) { return dtype == at::kDouble ? at::kDouble : at::kFloat; }

inline void check_float(const at::Tensor& t, const char* name) {
  const auto d = t.scalar_type();
  TORCH_CHECK_VALUE(d == at::kDouble || d == at::kFloat || d == at::kBFloat16 || d == at::kHalf, name,
                    " must be float64, float32, bfloat16 or float16, got ", d);
}

inline void check_device(const at::Tensor& t, const char* name, const at::Device& device) {
  TORCH_CHECK_VALUE(t.is_cuda() && t.device() == device, name, " is on ", t.device(), ", expected ", device);
}

inline void check_temperature(double temperature) {
  TORCH_CHECK_VALUE(temperature > 0, "temperature must be > 0, got ", temperature);
}

// A 1-d [n] tensor on `device`, converted to `dtype` and made contiguous.
inline at::Tensor vector_arg(const at::Tensor& t, const char* name, int64_t n, at::ScalarType dtype,
                             const at::Device& device) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, name, " must have shape (", n, "), got ", t.sizes());
  check_device(t, name, device);
  return t.to(dtype).contiguous();
}

// Integer labels/ids [n] -> int64, contiguous.
inline at::Tensor index_arg(const at::Tensor& t, const char* name, int64_t n, const at::Device& device) {
  TORCH_CHECK_VALUE(at::isIntegralType(t.scalar_type(), /*includeBool=*/false), name,
                    " must be an integer tensor, got ", t.scalar_type());
  return vector_arg(t, name, n, at::kLong, device);
}

inline std::string bad_label_message(int64_t row, int64_t value, int64_t vocab, int64_t ignore_index) {
  return c10::str("labels[", row, "] = ", value, " is outside the vocabulary [0, ", vocab,
                  ") and is not ignore_index (", ignore_index, ")");
}

}  // namespace lit_align::cuda
