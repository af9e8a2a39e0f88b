// linear_token_logprobs on CUDA (schema: csrc/ops.cpp): token log-probs of hidden @ weight.T + bias without the
// [N, V] logits. Rows whose label is ignore_index are dropped first (index_select), so they cost no LM-head work;
// the vocabulary is walked in tiles of `cols` columns: cuBLAS (at::mm, float32 output for bf16/fp16 inputs)
// writes one logits tile [M, cols] into a reused buffer and the kernels of linear_token_logprobs.cu consume it.
// The backward recomputes each tile instead of storing it (Cut Cross-Entropy, Wijmans et al., arXiv 2411.09009),
// turns it into dlogits, and feeds two GEMMs: grad_hidden += dlogits @ W_tile (accumulated in float32 across
// tiles) and grad_weight[tile] = dlogits.T @ hidden (one GEMM per tile over all rows: no cross-tile sum).
// Extra memory: O(M*H) for the compacted rows and their float32 gradient, plus the tile buffers.
// Each row keeps (raw max, log-sum) rather than one float32 lse (reduce.cuh says why).
//
// batch_invariant: cuBLAS picks its kernel (tiles, split-K) from the GEMM shape and the tile width here follows M,
// so a row's logits could change with the batch. In this mode the vocabulary tiles have a fixed width
// (kInvariantCols) and the rows go through the GEMMs in chunks of kInvariantRows copied into a staging buffer,
// so every logits GEMM and every grad_hidden GEMM has one shape and one alignment whatever the batch; cuBLAS
// computes each output row from its input row alone, with the same kernel, so a row's log-prob and hidden
// gradient are bitwise the same in any batch. grad_weight sums over the rows, chunk by chunk in order (float32
// accumulation): deterministic for a batch, not batch invariant; grad_bias adds column sums with atomics.
#include <algorithm>
#include <cstdlib>

#include <torch/library.h>

#include "binding.h"

namespace lit_align::cuda {
namespace {

// Tile width: about 2^26 float32 logits per tile (256 MiB), at least 128 columns, a multiple of 128 below V.
// LIT_ALIGN_CUDA_TILE_COLS forces a width (tests use it to cover the multi-tile path on small vocabularies).
constexpr int64_t kInvariantCols = 4096;
constexpr int64_t kInvariantRows = 256;

int64_t tile_columns(int64_t rows, int64_t vocab, bool batch_invariant) {
  if (const char* forced = std::getenv("LIT_ALIGN_CUDA_TILE_COLS")) {
    const int64_t cols = std::atoll(forced);
    if (cols > 0) return std::min(cols, vocab);
  }
  if (batch_invariant) return std::min(kInvariantCols, vocab);
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

// Row chunks of the compacted rows: all M at once, or kInvariantRows at a time through a staging buffer of that
// many rows (batch_invariant), so that every GEMM sees the same shape and alignment.
struct RowChunks {
  int64_t rows, size;
  at::Tensor staging;  // (kInvariantRows, H) or undefined
  RowChunks(const Compacted& c, bool batch_invariant) : rows(c.rows), size(batch_invariant ? kInvariantRows : c.rows) {
    if (batch_invariant) staging = at::zeros({kInvariantRows, c.hidden.size(1)}, c.hidden.options());
  }
  int64_t count() const { return (rows + size - 1) / size; }
  int64_t begin(int64_t k) const { return k * size; }
  int64_t length(int64_t k) const { return std::min(size, rows - k * size); }
  // The GEMM operand for chunk k: the rows themselves, or the staging buffer holding them (and stale padding).
  at::Tensor hidden(const Compacted& c, int64_t k) {
    if (!staging.defined()) return c.hidden;
    staging.narrow(0, 0, length(k)).copy_(c.hidden.narrow(0, begin(k), length(k)));
    return staging;
  }
};

// hidden (N, H), weight (V, H), bias (V,)?, labels (N,) -> (logp, row_max, log_sum) (N,) each, float32 (float64)
std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_token_logprobs_cuda(
    const at::Tensor& hidden_in, const at::Tensor& weight_in, const std::optional<at::Tensor>& bias_in,
    const at::Tensor& labels_in, int64_t ignore_index, double temperature, bool batch_invariant) {
  const LinearInputs x = linear_inputs(hidden_in, weight_in, bias_in, labels_in, temperature);
  const c10::cuda::CUDAGuard guard(x.hidden.device());
  const auto stat = x.hidden.options().dtype(stat_type(x.hidden.scalar_type()));
  auto logp = at::zeros({x.rows}, stat);  // ignored rows stay 0
  auto row_max = at::zeros({x.rows}, stat);
  auto log_sum = at::zeros({x.rows}, stat);
  const Compacted c = compact_rows(x, ignore_index);
  if (c.rows == 0) return {logp, row_max, log_sum};
  RowChunks chunks(c, batch_invariant);
  const int64_t max_cols = tile_columns(c.rows, x.vocab, batch_invariant);
  const auto buffer = at::empty({chunks.size * max_cols}, stat);
  auto run_max = at::empty({c.rows}, stat);
  auto run_sum = at::empty({c.rows}, stat);
  auto target = at::empty({c.rows}, stat);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  LIT_ALIGN_DISPATCH(x.hidden.scalar_type(), "lit_align::linear_token_logprobs", [&] {
    const T* bias = in_or_null<scalar_t>(x.bias);
    for (int64_t k = 0; k < chunks.count(); ++k) {
      const int64_t r0 = chunks.begin(k), r = chunks.length(k);
      const at::Tensor h = chunks.hidden(c, k);  // (chunk size, H)
      for (int64_t col0 = 0; col0 < x.vocab; col0 += max_cols) {
        const int64_t cols = std::min(max_cols, x.vocab - col0);
        auto tile = tile_view(buffer, chunks.size, cols);  // (chunk size, cols)
        logits_tile(h, x.weight.narrow(0, col0, cols), tile);
        linear_fold_tile<T>(in<S>(tile), bias == nullptr ? nullptr : bias + col0,
                            c.labels.const_data_ptr<int64_t>() + r0, r, cols, col0, temperature, col0 == 0,
                            out<S>(run_max) + r0, out<S>(run_sum) + r0, out<S>(target) + r0, stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
    linear_finalize<S>(in<S>(run_max), in<S>(run_sum), in<S>(target), c.index.const_data_ptr<int64_t>(), c.rows,
                       temperature, out<S>(logp), out<S>(row_max), out<S>(log_sum), stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {logp, row_max, log_sum};
}

// The backward's per compacted row inputs, and the kernel that turns a logits tile of rows [r0, r0 + r) into
// dlogits (adding its column sums to grad_bias when wanted).
struct GradRows {
  at::Tensor row_max, log_sum, grad_logp, grad_log_sum;  // (M,) each, statistics dtype
  at::Tensor bias_acc;                                     // (V,) statistics dtype, or undefined
  template <typename scalar_t, typename T, typename S>
  void dlogits(const at::Tensor& logits, const LinearInputs& x, const Compacted& c, int64_t r0, int64_t r,
               int64_t col0, int64_t cols, double temperature, at::Tensor& dlogits_tile, cudaStream_t stream) const {
    const T* bias = in_or_null<scalar_t>(x.bias);
    linear_grad_tile<T>(in<S>(logits), bias == nullptr ? nullptr : bias + col0, c.labels.const_data_ptr<int64_t>() + r0,
                        in<S>(row_max) + r0, in<S>(log_sum) + r0, in<S>(grad_logp) + r0, in<S>(grad_log_sum) + r0, r,
                        cols, col0, temperature, out<scalar_t>(dlogits_tile),
                        bias_acc.defined() ? out<S>(bias_acc) + col0 : nullptr, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

// out (rows, H) float32/64 = d (rows, cols) @ w (cols, H), float32 accumulation for bf16/fp16 operands.
void product(at::Tensor& out, const at::Tensor& d, const at::Tensor& w) {
  if (low_precision(d)) {
    at::mm_out(out, d, w, at::kFloat);
  } else {
    at::mm_out(out, d, w);
  }
}

// Default mode: one pass over the vocabulary tiles with all M rows per GEMM; acc (M, H) += dlogits @ W_tile and
// grad_weight[tile] = dlogits.T @ hidden.
template <typename scalar_t, typename T, typename S>
void backward_tiles(const LinearInputs& x, const Compacted& c, const GradRows& g, double temperature,
                    bool compute_weight_grad, at::Tensor& acc, at::Tensor& grad_weight, cudaStream_t stream) {
  const auto stat = acc.options();
  const bool low = low_precision(x.hidden);
  const int64_t max_cols = tile_columns(c.rows, x.vocab, false);
  const auto logits_buffer = at::empty({c.rows * max_cols}, stat);
  // dlogits: in place over the logits for float32/64; a bf16/fp16 copy (the GEMM operand) otherwise.
  const auto dlogits_buffer = low ? at::empty({c.rows * max_cols}, x.hidden.options()) : logits_buffer;
  at::Tensor partial;  // (M, H) float32: one tile's share of grad_hidden (bf16/fp16, from the second tile on)
  for (int64_t col0 = 0; col0 < x.vocab; col0 += max_cols) {
    const int64_t cols = std::min(max_cols, x.vocab - col0);
    const auto weight_rows = x.weight.narrow(0, col0, cols);  // (cols, H)
    auto logits = tile_view(logits_buffer, c.rows, cols);     // (M, cols)
    auto dlogits = tile_view(dlogits_buffer, c.rows, cols);   // (M, cols)
    logits_tile(c.hidden, weight_rows, logits);
    g.dlogits<scalar_t, T, S>(logits, x, c, 0, c.rows, col0, cols, temperature, dlogits, stream);
    if (col0 == 0) {  // float32 accumulation of grad_hidden across tiles
      product(acc, dlogits, weight_rows);
    } else if (low) {
      if (!partial.defined()) partial = at::empty_like(acc);
      product(partial, dlogits, weight_rows);
      acc.add_(partial);
    } else {
      acc.addmm_(dlogits, weight_rows);
    }
    if (compute_weight_grad) {
      auto grad_weight_rows = grad_weight.narrow(0, col0, cols);  // (cols, H)
      at::mm_out(grad_weight_rows, dlogits.t(), c.hidden);
    }
  }
}

// batch_invariant: vocabulary tiles of kInvariantCols; in each, the rows in chunks of kInvariantRows through the
// staging buffer, so that the logits GEMM and the grad_hidden GEMM (into a fixed (kInvariantRows, H) buffer,
// then added to the chunk's rows of acc) always have the same shape. grad_weight[tile] sums the chunks in order,
// in float32.
template <typename scalar_t, typename T, typename S>
void backward_fixed_chunks(const LinearInputs& x, const Compacted& c, const GradRows& g, double temperature,
                           bool compute_weight_grad, at::Tensor& acc, at::Tensor& grad_weight, cudaStream_t stream) {
  const auto stat = acc.options();
  const int64_t hdim = x.hidden.size(1);
  RowChunks chunks(c, true);
  const int64_t max_cols = tile_columns(c.rows, x.vocab, true);
  const auto logits_buffer = at::empty({chunks.size * max_cols}, stat);
  const auto dlogits_buffer = low_precision(x.hidden) ? at::zeros({chunks.size * max_cols}, x.hidden.options())
                                                      : logits_buffer;
  auto partial = at::empty({chunks.size, hdim}, stat);  // (chunk size, H): one chunk's share of grad_hidden
  const bool weight_in_stat = grad_weight.defined() && grad_weight.scalar_type() == stat.dtype().toScalarType();
  at::Tensor gw_tile, gw_part;  // (cols, H) float32: the tile's grad_weight and one chunk's share of it
  acc.zero_();
  for (int64_t col0 = 0; col0 < x.vocab; col0 += max_cols) {
    const int64_t cols = std::min(max_cols, x.vocab - col0);
    const auto weight_rows = x.weight.narrow(0, col0, cols);  // (cols, H)
    if (compute_weight_grad) {
      gw_tile = weight_in_stat ? grad_weight.narrow(0, col0, cols) : at::empty({cols, hdim}, stat);
      gw_part = at::empty({cols, hdim}, stat);
    }
    for (int64_t k = 0; k < chunks.count(); ++k) {
      const int64_t r0 = chunks.begin(k), r = chunks.length(k);
      const at::Tensor h = chunks.hidden(c, k);                 // (chunk size, H)
      auto logits = tile_view(logits_buffer, chunks.size, cols);  // (chunk size, cols)
      auto dlogits = tile_view(dlogits_buffer, chunks.size, cols);
      logits_tile(h, weight_rows, logits);
      g.dlogits<scalar_t, T, S>(logits, x, c, r0, r, col0, cols, temperature, dlogits, stream);
      product(partial, dlogits, weight_rows);  // rows past r: stale padding, never read
      acc.narrow(0, r0, r).add_(partial.narrow(0, 0, r));
      if (compute_weight_grad) {
        auto part = k == 0 ? gw_tile : gw_part;
        product(part, dlogits.narrow(0, 0, r).t(), h.narrow(0, 0, r));  // (cols, H)
        if (k > 0) gw_tile.add_(gw_part);
      }
    }
    if (compute_weight_grad && !weight_in_stat) grad_weight.narrow(0, col0, cols).copy_(gw_tile);
  }
}

// -> (grad_hidden (N, H), grad_weight (V, H) or (0,), grad_bias (V,) or (0,)) in hidden's dtype
std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_token_logprobs_backward_cuda(
    const at::Tensor& grad_logp_in, const at::Tensor& grad_log_sum_in, const at::Tensor& hidden_in,
    const at::Tensor& weight_in, const std::optional<at::Tensor>& bias_in, const at::Tensor& labels_in,
    const at::Tensor& row_max_in, const at::Tensor& log_sum_in, int64_t ignore_index, double temperature,
    bool compute_weight_grad, bool batch_invariant) {
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

  const auto row_vector = [&](const at::Tensor& t, const char* name) {
    return gather_rows(vector_arg(t, name, x.rows, stat_dtype, device), c);
  };
  GradRows g{row_vector(row_max_in, "row_max"), row_vector(log_sum_in, "log_sum"),
             row_vector(grad_logp_in, "grad_logp"), row_vector(grad_log_sum_in, "grad_log_sum"),
             with_bias_grad ? at::zeros({x.vocab}, stat) : at::Tensor()};
  auto acc = at::empty({c.rows, x.hidden.size(1)}, stat);  // (M, H) grad_hidden rows
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  LIT_ALIGN_DISPATCH(x.hidden.scalar_type(), "lit_align::linear_token_logprobs_backward", [&] {
    if (batch_invariant) {
      backward_fixed_chunks<scalar_t, T, S>(x, c, g, temperature, compute_weight_grad, acc, grad_weight, stream);
    } else {
      backward_tiles<scalar_t, T, S>(x, c, g, temperature, compute_weight_grad, acc, grad_weight, stream);
    }
  });
  if (c.all) {
    grad_hidden.copy_(acc);
  } else {
    grad_hidden.index_copy_(0, c.index, acc.to(x.hidden.scalar_type()));
  }
  if (with_bias_grad) grad_bias.copy_(g.bias_acc);
  return {grad_hidden, grad_weight, grad_bias};
}

}  // namespace
}  // namespace lit_align::cuda

TORCH_LIBRARY_IMPL(lit_align, CUDA, m) {
  m.impl("linear_token_logprobs", &lit_align::cuda::linear_token_logprobs_cuda);
  m.impl("linear_token_logprobs_backward", &lit_align::cuda::linear_token_logprobs_backward_cuda);
}
