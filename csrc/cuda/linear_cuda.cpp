// linear_token_logprobs on CUDA (schema: csrc/ops.cpp): token log-probs of hidden @ weight.T + bias without the
// [N, V] logits. Rows whose label is ignore_index are dropped first (index_select), so they cost no LM-head work;
// the vocabulary is walked in tiles of `cols` columns: cuBLAS (at::mm, float32 output for bf16/fp16 inputs)
// writes one logits tile [M, cols] into a reused buffer and the kernels of linear_token_logprobs.cu consume it.
// The backward recomputes each tile instead of storing it (Cut Cross-Entropy, Wijmans et al., arXiv 2411.09009),
// turns it into dlogits, and feeds two GEMMs: grad_hidden += dlogits @ W_tile (accumulated in float32 across
// tiles) and grad_weight[tile] = dlogits.T @ hidden (one GEMM per tile over all rows: no cross-tile sum).
// Extra memory: O(M*H) for the compacted rows and their float32 gradient, plus the tile buffers.
#include <algorithm>
#include <cstdlib>

#include <torch/library.h>

#include "binding.h"

namespace lit_align::cuda {
namespace {

// Tile width: about 2^26 float32 logits per tile (256 MiB), at least 128 columns, a multiple of 128 below V.
// LIT_ALIGN_CUDA_TILE_COLS forces a width (tests use it to cover the multi-tile path on small vocabularies).
int64_t tile_columns(int64_t rows, int64_t vocab) {
  if (const char* forced = std::getenv("LIT_ALIGN_CUDA_TILE_COLS")) {
    const int64_t cols = std::atoll(forced);
    if (cols > 0) return std::min(cols, vocab);
  }
  constexpr int64_t kTileElements = int64_t{1} << 26;
  const int64_t cols = kTileElements / std::max<int64_t>(rows, 1);
  return cols >= vocab ? vocab : std::max<int64_t>(128, cols / 128 * 128);
}

bool low_precision(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf;
}

// out (M, cols) float32/64 = hidden (M, H) @ weight_rows (cols, H).T, float32 accumulation for bf16/fp16.
void logits_tile(const at::Tensor& hidden, const at::Tensor& weight_rows, at::Tensor& out) {
  if (low_precision(hidden)) {
    at::mm_out(out, hidden, weight_rows.t(), at::kFloat);
  } else {
    at::mm_out(out, hidden, weight_rows.t());
  }
}

struct LinearInputs {
  at::Tensor hidden, weight, bias, labels;  // (N, H), (V, H), (V,) or undefined, (N,) int64
  int64_t rows, vocab;
};

LinearInputs linear_inputs(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           const at::Tensor& labels, double temperature) {
  TORCH_CHECK_VALUE(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
                    "expected hidden (N, H) and weight (V, H), got ", hidden.sizes(), " and ", weight.sizes());
  check_float(hidden, "hidden");
  TORCH_CHECK_VALUE(weight.scalar_type() == hidden.scalar_type(), "hidden (", hidden.scalar_type(), ") and weight (",
                    weight.scalar_type(), ") must have the same dtype");
  check_temperature(temperature);
  const auto device = hidden.device();
  check_device(hidden, "hidden", device);
  check_device(weight, "weight", device);
  LinearInputs x;
  x.rows = hidden.size(0);
  x.vocab = weight.size(0);
  x.hidden = hidden.contiguous();
  x.weight = weight.contiguous();
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK_VALUE(bias->scalar_type() == weight.scalar_type(), "bias must have dtype ", weight.scalar_type(),
                      ", got ", bias->scalar_type());
    x.bias = vector_arg(*bias, "bias", x.vocab, weight.scalar_type(), device);
  }
  x.labels = index_arg(labels, "labels", x.rows, device);
  return x;
}

// The rows that are not ignored: index (M,), their labels (M,) and hidden states (M, H). Two syncs: the count
// (nonzero), and the range check of the labels (ValueError naming the first bad one).
struct Compacted {
  at::Tensor index, labels, hidden;
  int64_t rows;
  bool all;  // M == N: index is the identity
};

Compacted compact_rows(const LinearInputs& x, int64_t ignore_index) {
  Compacted c;
  c.index = at::nonzero(x.labels != ignore_index).squeeze(1);
  c.rows = c.index.size(0);
  c.all = c.rows == x.rows;
  c.labels = c.all ? x.labels : x.labels.index_select(0, c.index);
  c.hidden = c.all ? x.hidden : x.hidden.index_select(0, c.index);
  if (c.rows > 0) {
    const auto bad = (c.labels < 0).logical_or(c.labels >= x.vocab);
    if (bad.any().item<bool>()) {
      const int64_t k = at::nonzero(bad)[0][0].item<int64_t>();
      TORCH_CHECK_VALUE(false, bad_label_message(c.index[k].item<int64_t>(), c.labels[k].item<int64_t>(), x.vocab,
                                                 ignore_index));
    }
  }
  return c;
}

at::Tensor gather_rows(const at::Tensor& t, const Compacted& c) { return c.all ? t : t.index_select(0, c.index); }

// A [rows, cols] view at the front of a flat tile buffer: contiguous, so cuBLAS writes it in place.
at::Tensor tile_view(const at::Tensor& buffer, int64_t rows, int64_t cols) {
  return buffer.narrow(0, 0, rows * cols).view({rows, cols});
}

// hidden (N, H), weight (V, H), bias (V,)?, labels (N,) -> (logp (N,), lse (N,)) float32 (float64)
std::tuple<at::Tensor, at::Tensor> linear_token_logprobs_cuda(const at::Tensor& hidden_in, const at::Tensor& weight_in,
                                                              const std::optional<at::Tensor>& bias_in,
                                                              const at::Tensor& labels_in, int64_t ignore_index,
                                                              double temperature) {
  const LinearInputs x = linear_inputs(hidden_in, weight_in, bias_in, labels_in, temperature);
  const c10::cuda::CUDAGuard guard(x.hidden.device());
  const auto stat = x.hidden.options().dtype(stat_type(x.hidden.scalar_type()));
  auto logp = at::zeros({x.rows}, stat);  // ignored rows stay 0
  auto lse = at::zeros({x.rows}, stat);
  const Compacted c = compact_rows(x, ignore_index);
  if (c.rows == 0) return {logp, lse};
  const int64_t max_cols = tile_columns(c.rows, x.vocab);
  const auto buffer = at::empty({c.rows * max_cols}, stat);
  auto run_max = at::empty({c.rows}, stat);
  auto run_sum = at::empty({c.rows}, stat);
  auto target = at::empty({c.rows}, stat);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  LIT_ALIGN_DISPATCH(x.hidden.scalar_type(), "lit_align::linear_token_logprobs", [&] {
    const T* bias = in_or_null<scalar_t>(x.bias);
    for (int64_t col0 = 0; col0 < x.vocab; col0 += max_cols) {
      const int64_t cols = std::min(max_cols, x.vocab - col0);
      auto tile = tile_view(buffer, c.rows, cols);  // (M, cols)
      logits_tile(c.hidden, x.weight.narrow(0, col0, cols), tile);
      linear_fold_tile<T>(in<S>(tile), bias == nullptr ? nullptr : bias + col0, c.labels.const_data_ptr<int64_t>(),
                          c.rows, cols, col0, temperature, col0 == 0, out<S>(run_max), out<S>(run_sum),
                          out<S>(target), stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    linear_finalize<S>(in<S>(run_max), in<S>(run_sum), in<S>(target), c.index.const_data_ptr<int64_t>(), c.rows,
                       temperature, out<S>(logp), out<S>(lse), stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {logp, lse};
}

// -> (grad_hidden (N, H), grad_weight (V, H) or (0,), grad_bias (V,) or (0,)) in hidden's dtype
std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_token_logprobs_backward_cuda(
    const at::Tensor& grad_logp_in, const at::Tensor& grad_lse_in, const at::Tensor& hidden_in,
    const at::Tensor& weight_in, const std::optional<at::Tensor>& bias_in, const at::Tensor& labels_in,
    const at::Tensor& lse_in, int64_t ignore_index, double temperature, bool compute_weight_grad) {
  const LinearInputs x = linear_inputs(hidden_in, weight_in, bias_in, labels_in, temperature);
  const auto device = x.hidden.device();
  const c10::cuda::CUDAGuard guard(device);
  const auto stat_dtype = stat_type(x.hidden.scalar_type());
  const auto stat = x.hidden.options().dtype(stat_dtype);
  const bool with_bias_grad = compute_weight_grad && x.bias.defined();
  const Compacted c = compact_rows(x, ignore_index);
  auto grad_hidden = at::zeros_like(x.hidden);  // ignored rows stay 0
  // Every tile writes its rows of grad_weight, so it needs zeros only when there is no tile to write it.
  auto grad_weight = !compute_weight_grad ? x.weight.new_empty({0})
                     : c.rows > 0         ? at::empty_like(x.weight)
                                          : at::zeros_like(x.weight);
  auto grad_bias = with_bias_grad ? at::zeros({x.vocab}, x.weight.options()) : x.weight.new_empty({0});
  if (c.rows == 0) return {grad_hidden, grad_weight, grad_bias};

  const auto lse = gather_rows(vector_arg(lse_in, "lse", x.rows, stat_dtype, device), c);
  const auto grad_logp = gather_rows(vector_arg(grad_logp_in, "grad_logp", x.rows, stat_dtype, device), c);
  const auto grad_lse = gather_rows(vector_arg(grad_lse_in, "grad_lse", x.rows, stat_dtype, device), c);
  const bool low = low_precision(x.hidden);
  const int64_t max_cols = tile_columns(c.rows, x.vocab);
  const auto logits_buffer = at::empty({c.rows * max_cols}, stat);
  // dlogits: in place over the logits for float32/64; a bf16/fp16 copy (the GEMM operand) otherwise.
  const auto dlogits_buffer = low ? at::empty({c.rows * max_cols}, x.hidden.options()) : logits_buffer;
  auto acc = at::empty({c.rows, x.hidden.size(1)}, stat);                          // (M, H) grad_hidden rows
  at::Tensor partial;  // (M, H) float32: one tile's share of grad_hidden (bf16/fp16, from the second tile on)
  auto bias_acc = with_bias_grad ? at::zeros({x.vocab}, stat) : at::Tensor();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  LIT_ALIGN_DISPATCH(x.hidden.scalar_type(), "lit_align::linear_token_logprobs_backward", [&] {
    const T* bias = in_or_null<scalar_t>(x.bias);
    for (int64_t col0 = 0; col0 < x.vocab; col0 += max_cols) {
      const int64_t cols = std::min(max_cols, x.vocab - col0);
      const auto weight_rows = x.weight.narrow(0, col0, cols);  // (cols, H)
      auto logits = tile_view(logits_buffer, c.rows, cols);     // (M, cols)
      auto dlogits = tile_view(dlogits_buffer, c.rows, cols);   // (M, cols)
      logits_tile(c.hidden, weight_rows, logits);
      linear_grad_tile<T>(in<S>(logits), bias == nullptr ? nullptr : bias + col0, c.labels.const_data_ptr<int64_t>(),
                          in<S>(lse), in<S>(grad_logp), in<S>(grad_lse), c.rows, cols, col0, temperature,
                          out<scalar_t>(dlogits), with_bias_grad ? out<S>(bias_acc) + col0 : nullptr, stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (low && col0 == 0) {  // float32 accumulation of grad_hidden across tiles
        at::mm_out(acc, dlogits, weight_rows, at::kFloat);
      } else if (low) {
        if (!partial.defined()) partial = at::empty_like(acc);
        at::mm_out(partial, dlogits, weight_rows, at::kFloat);
        acc.add_(partial);
      } else if (col0 == 0) {
        at::mm_out(acc, dlogits, weight_rows);
      } else {
        acc.addmm_(dlogits, weight_rows);
      }
      if (compute_weight_grad) {
        auto grad_weight_rows = grad_weight.narrow(0, col0, cols);  // (cols, H)
        at::mm_out(grad_weight_rows, dlogits.t(), c.hidden);
      }
    }
  });
  if (c.all) {
    grad_hidden.copy_(acc);
  } else {
    grad_hidden.index_copy_(0, c.index, acc.to(x.hidden.scalar_type()));
  }
  if (with_bias_grad) grad_bias.copy_(bias_acc);
  return {grad_hidden, grad_weight, grad_bias};
}

}  // namespace
}  // namespace lit_align::cuda

TORCH_LIBRARY_IMPL(lit_align, CUDA, m) {
  m.impl("linear_token_logprobs", &lit_align::cuda::linear_token_logprobs_cuda);
  m.impl("linear_token_logprobs_backward", &lit_align::cuda::linear_token_logprobs_backward_cuda);
}
