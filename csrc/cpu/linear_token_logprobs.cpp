// CPU kernels for lit_align::linear_token_logprobs and its backward (schemas: csrc/ops.cpp).
//
// log_softmax((hidden @ weight.T + bias) / T)[label] without ever holding the [N, V] logits:
//   * rows whose label is ignore_index are dropped first (prompt and padding cost no LM-head work);
//   * the vocabulary is cut into tiles that the threads take from a shared counter; a thread streams its
//     tile's logits through a small private buffer, [row chunk, vocab tile] at a time, each one a
//     single-threaded BLAS GEMM (at::mm inside at::parallel_for) followed, while the chunk is still in
//     L2, by a fused vectorised pass (online logsumexp + target-logit pick, row_softmax.h);
//   * the backward recomputes every logit chunk, as Cut Cross-Entropy does (Wijmans et al., arXiv
//     2411.09009), turns it in place into D = dL/dz = (g_logp * onehot + (g_lse - g_logp) * softmax) / T
//     and feeds it to two GEMMs: grad_W_tile += D^T @ hidden_rows (the thread owns its tile's rows of
//     grad_W) and grad_hidden_rows += D @ W_tile (a private product added under a per-chunk lock).
// Threads synchronise once per call, not once per GEMM: on a small or busy machine a descheduled thread
// then delays only the tile it holds. bf16/half inputs are computed in float32 (hidden once, weight one
// tile at a time) and gradients accumulate in float32.
// Extra memory: O(N*H) for the kept rows and grad_hidden, plus O(tile) per thread.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "checks.h"
#include "row_softmax.h"

namespace lit_align::cpu {
namespace {

// Tile sizes, measured on a 2-core AVX2 machine at H = 512 (MKL sgemm): a vocabulary tile of up to 1024
// columns, and row chunks of kChunkElems logits (1 MiB of float32: one core's L2).
constexpr int64_t kMaxVocabTile = 1024;
constexpr int64_t kMinVocabTile = 64;
constexpr int64_t kTilesPerThread = 4;  // enough tiles for the shared counter to balance the threads
constexpr int64_t kChunkElems = int64_t(256) * 1024;

void check_inputs(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  double temperature) {
  check_float("hidden", hidden);
  check_float("weight", weight);
  TORCH_CHECK_VALUE(hidden.dim() == 2 && weight.dim() == 2, "expected hidden (N, H) and weight (V, H), got ",
                    hidden.sizes(), " and ", weight.sizes());
  TORCH_CHECK_VALUE(hidden.size(1) == weight.size(1), "hidden size mismatch: hidden has H=", hidden.size(1),
                    ", weight (V, H) has H=", weight.size(1));
  TORCH_CHECK_VALUE(hidden.scalar_type() == weight.scalar_type(), "hidden (", hidden.scalar_type(),
                    ") and weight (", weight.scalar_type(), ") must have the same dtype");
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0) &&
                          bias->scalar_type() == weight.scalar_type(),
                      "bias must have shape (", weight.size(0), ",) and dtype ", weight.scalar_type(), ", got ",
                      bias->sizes(), " ", bias->scalar_type());
  }
  check_temperature(temperature);
}

// The rows whose label is not ignore_index: their indices, labels and hidden states in the compute dtype.
struct KeptRows {
  std::vector<int64_t> index;   // (M,) row numbers in [0, N)
  std::vector<int64_t> labels;  // (M,)
  at::Tensor hidden;            // (M, H) float32 / float64, contiguous
  int64_t size() const { return static_cast<int64_t>(index.size()); }
  at::Tensor index_tensor() const {  // a view of `index`: valid while this struct lives
    return at::from_blob(const_cast<int64_t*>(index.data()), {size()}, at::kLong);
  }
};

KeptRows keep_rows(const at::Tensor& hidden, const at::Tensor& labels, int64_t ignore_index) {
  KeptRows kept;
  kept.index = kept_rows(labels, ignore_index);
  const int64_t* y = labels.const_data_ptr<int64_t>();
  for (int64_t i : kept.index) kept.labels.push_back(y[i]);
  const bool all = kept.size() == hidden.size(0);
  kept.hidden = (all ? hidden : hidden.index_select(0, kept.index_tensor())).to(acc_dtype(hidden)).contiguous();
  return kept;
}

// How the [M, V] logits are cut: vocabulary tiles (the unit of work) and row chunks within a tile.
struct Tiling {
  int64_t rows, vocab, vocab_tile, row_chunk, tiles, workers;
  Tiling(int64_t m, int64_t v) : rows(m), vocab(v) {
    const int64_t threads = at::get_num_threads();
    const int64_t per_thread = (v + kTilesPerThread * threads - 1) / (kTilesPerThread * threads);
    vocab_tile = std::clamp<int64_t>((per_thread + 15) / 16 * 16, kMinVocabTile, kMaxVocabTile);
    vocab_tile = std::max<int64_t>(1, std::min(vocab_tile, v));
    row_chunk = std::max<int64_t>(1, std::min(m, kChunkElems / vocab_tile));
    tiles = (v + vocab_tile - 1) / vocab_tile;
    workers = std::max<int64_t>(1, std::min(threads, tiles));
  }
  int64_t tile_width(int64_t tile) const { return std::min(vocab_tile, vocab - tile * vocab_tile); }
};

// Runs fn(worker, tile) for every vocabulary tile, on `workers` threads that take tiles from a shared counter.
// The workers call ATen ops (at::mm), so they get the caller's thread-local dispatch state (below autograd).
template <typename Fn>
void for_each_tile(const Tiling& tiling, const Fn& fn) {
  std::atomic<int64_t> next{0};
  const at::ThreadLocalState caller_state;
  at::parallel_for(0, tiling.workers, 1, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard state_guard(caller_state);
    for (int64_t worker = begin; worker < end; ++worker) {
      for (int64_t tile = next++; tile < tiling.tiles; tile = next++) fn(worker, tile);
    }
  });
}

// One thread's view of a vocabulary tile: weight[v0:v0+v] (and bias) in the compute dtype, and the logit
// chunks z[r0:r0+r, v0:v0+v] = hidden @ weight_tile.T (+ bias), unscaled (the fused passes apply 1/T),
// computed into a private buffer.
class TileLogits {
 public:
  TileLogits(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
             const Tiling& tiling, int64_t tile)
      : hidden_(hidden), v0_(tile * tiling.vocab_tile), v_(tiling.tile_width(tile)) {
    const auto dtype = hidden.scalar_type();
    w_ = weight.narrow(0, v0_, v_).to(dtype).contiguous();                              // (v, H): a view for f32/f64
    if (bias.has_value()) b_ = bias->narrow(0, v0_, v_).to(dtype).expand({tiling.row_chunk, v_});  // (r, v)
    buffer_ = at::empty({tiling.row_chunk * v_}, hidden.options());
  }
  int64_t begin() const { return v0_; }
  int64_t width() const { return v_; }
  const at::Tensor& weight() const { return w_; }

  at::Tensor logits(int64_t r0, int64_t r) {  // (r, v), contiguous
    at::Tensor z = buffer_.narrow(0, 0, r * v_).view({r, v_});
    const at::Tensor h = hidden_.narrow(0, r0, r);  // (r, H)
    if (b_.defined()) {
      at::addmm_out(z, b_.narrow(0, 0, r), h, w_.t());
    } else {
      at::mm_out(z, h, w_.t());
    }
    return z;
  }

 private:
  const at::Tensor& hidden_;
  int64_t v0_, v_;
  at::Tensor w_, b_, buffer_;
};

std::tuple<at::Tensor, at::Tensor> linear_token_logprobs(const at::Tensor& hidden_in, const at::Tensor& weight_in,
                                                         const std::optional<at::Tensor>& bias_in,
                                                         const at::Tensor& labels_in, int64_t ignore_index,
                                                         double temperature) {
  check_inputs(hidden_in, weight_in, bias_in, temperature);
  const int64_t n = hidden_in.size(0), vocab = weight_in.size(0);
  const at::Tensor labels = checked_labels(labels_in, n, vocab, ignore_index);
  const auto stat = acc_dtype(hidden_in);
  at::Tensor logp = at::zeros({n}, hidden_in.options().dtype(stat));  // (N,): ignored rows stay 0
  at::Tensor lse = at::zeros({n}, logp.options());                    // (N,)
  const KeptRows kept = keep_rows(hidden_in, labels, ignore_index);
  const int64_t m = kept.size();
  if (m == 0 || vocab == 0) return {logp, lse};
  const at::Tensor weight = weight_in.contiguous();
  const std::optional<at::Tensor> bias = bias_in.has_value() ? std::optional(bias_in->contiguous()) : std::nullopt;
  const Tiling tiling(m, vocab);
  AT_DISPATCH_FLOATING_TYPES(stat, "linear_token_logprobs", [&] {
    using A = scalar_t;
    const A scale = static_cast<A>(1.0 / temperature);
    // Each worker folds its tiles into its own running (max, sum) per row; merged below.
    std::vector<std::vector<OnlineLSE<A>>> partial(tiling.workers, std::vector<OnlineLSE<A>>(m));
    std::vector<A> target(m, A(0));  // z_y / T, written by the one tile that holds the label
    for_each_tile(tiling, [&](int64_t worker, int64_t tile) {
      TileLogits tl(kept.hidden, weight, bias, tiling, tile);
      const int64_t v0 = tl.begin(), v = tl.width();
      for (int64_t r0 = 0; r0 < m; r0 += tiling.row_chunk) {
        const int64_t r = std::min(tiling.row_chunk, m - r0);
        const A* z = tl.logits(r0, r).const_data_ptr<A>();  // (r, v)
        for (int64_t i = 0; i < r; ++i) {
          const A* row = z + i * v;
          online_lse_update(row, v, scale, partial[worker][r0 + i]);
          const int64_t col = kept.labels[r0 + i] - v0;
          if (col >= 0 && col < v) target[r0 + i] = row[col] * scale;
        }
      }
    });
    A* logp_out = logp.data_ptr<A>();
    A* lse_out = lse.data_ptr<A>();
    for (int64_t k = 0; k < m; ++k) {
      OnlineLSE<A> total;
      for (const auto& p : partial) total.max = std::max(total.max, p[k].max);
      for (const auto& p : partial) {
        if (p[k].sum > 0) total.sum += p[k].sum * std::exp(p[k].max - total.max);
      }
      const int64_t i = kept.index[k];
      lse_out[i] = total.lse();
      logp_out[i] = target[k] - lse_out[i];
    }
  });
  return {logp, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_token_logprobs_backward(
    const at::Tensor& grad_logp_in, const at::Tensor& grad_lse_in, const at::Tensor& hidden_in,
    const at::Tensor& weight_in, const std::optional<at::Tensor>& bias_in, const at::Tensor& labels_in,
    const at::Tensor& lse_in, int64_t ignore_index, double temperature, bool compute_weight_grad) {
  check_inputs(hidden_in, weight_in, bias_in, temperature);
  const int64_t n = hidden_in.size(0), hdim = hidden_in.size(1), vocab = weight_in.size(0);
  const at::Tensor labels = checked_labels(labels_in, n, vocab, ignore_index);
  check_float("grad_logp", grad_logp_in);
  check_float("grad_lse", grad_lse_in);
  check_float("lse", lse_in);
  check_1d("grad_logp", grad_logp_in, n);
  check_1d("grad_lse", grad_lse_in, n);
  check_1d("lse", lse_in, n);
  const auto stat = acc_dtype(hidden_in);
  const bool with_bias = compute_weight_grad && bias_in.has_value();
  const KeptRows kept = keep_rows(hidden_in, labels, ignore_index);
  const int64_t m = kept.size();

  // Gradients in the compute dtype (grad_hidden for the kept rows only); grad_weight in weight's dtype, each
  // of its rows written once by the tile that owns it (all zero when no row is kept).
  at::Tensor gh = at::zeros({m, hdim}, hidden_in.options().dtype(stat));  // (M, H)
  at::Tensor gw;                                                          // (V, H)
  if (compute_weight_grad) {
    gw = m > 0 ? at::empty({vocab, hdim}, weight_in.options()) : at::zeros({vocab, hdim}, weight_in.options());
  }
  at::Tensor gb = with_bias ? at::zeros({vocab}, hidden_in.options().dtype(stat)) : at::Tensor();     // (V,)
  if (m > 0 && vocab > 0) {
    const at::Tensor weight = weight_in.contiguous();
    const std::optional<at::Tensor> bias =
        bias_in.has_value() ? std::optional(bias_in->contiguous()) : std::nullopt;
    const Tiling tiling(m, vocab);
    std::vector<std::mutex> chunk_locks((m + tiling.row_chunk - 1) / tiling.row_chunk);  // guard gh's row chunks
    AT_DISPATCH_FLOATING_TYPES(stat, "linear_token_logprobs_backward", [&] {
      using A = scalar_t;
      const A scale = static_cast<A>(1.0 / temperature);
      // Per kept row: softmax coefficient (g_lse - g_logp) / T, label term g_logp / T, and lse.
      const at::Tensor gp_t = grad_logp_in.to(stat).contiguous(), gl_t = grad_lse_in.to(stat).contiguous();
      const at::Tensor lse_t = lse_in.to(stat).contiguous();
      const A *gp = gp_t.const_data_ptr<A>(), *gl = gl_t.const_data_ptr<A>(), *lse_p = lse_t.const_data_ptr<A>();
      std::vector<A> coef(m), label_term(m), row_lse(m);
      for (int64_t k = 0; k < m; ++k) {
        const int64_t i = kept.index[k];
        coef[k] = (gl[i] - gp[i]) * scale;
        label_term[k] = gp[i] * scale;
        row_lse[k] = lse_p[i];
      }
      for_each_tile(tiling, [&](int64_t /*worker*/, int64_t tile) {
        TileLogits tl(kept.hidden, weight, bias, tiling, tile);
        const int64_t v0 = tl.begin(), v = tl.width();
        // This tile's rows of grad_weight, accumulated in the compute dtype.
        at::Tensor gw_tile;
        if (gw.defined()) {
          gw_tile = gw.scalar_type() == stat ? gw.narrow(0, v0, v) : at::empty({v, hdim}, gh.options());  // (v, H)
        }
        at::Tensor gh_part = at::empty({tiling.row_chunk, hdim}, gh.options());  // D @ W_tile for one chunk
        for (int64_t r0 = 0; r0 < m; r0 += tiling.row_chunk) {
          const int64_t r = std::min(tiling.row_chunk, m - r0);
          at::Tensor d = tl.logits(r0, r);  // (r, v): z, turned in place into D
          A* z = d.data_ptr<A>();
          for (int64_t i = 0; i < r; ++i) {
            A* row = z + i * v;
            const int64_t k = r0 + i;
            softmax_scaled(row, v, scale, row_lse[k], coef[k], row);
            const int64_t col = kept.labels[k] - v0;
            if (col >= 0 && col < v) row[col] += label_term[k];
          }
          const at::Tensor h_rows = kept.hidden.narrow(0, r0, r);  // (r, H)
          if (gw_tile.defined()) {
            if (r0 == 0) {
              at::mm_out(gw_tile, d.t(), h_rows);
            } else {
              gw_tile.addmm_(d.t(), h_rows);
            }
          }
          if (gb.defined()) gb.narrow(0, v0, v).add_(d.sum(0));
          at::Tensor part = gh_part.narrow(0, 0, r);
          at::mm_out(part, d, tl.weight());  // (r, H)
          std::lock_guard<std::mutex> guard(chunk_locks[r0 / tiling.row_chunk]);
          gh.narrow(0, r0, r).add_(part);
        }
        if (gw_tile.defined() && gw.scalar_type() != stat) gw.narrow(0, v0, v).copy_(gw_tile);
      });
    });
  }
  // Back to all N rows (ignored rows get exactly 0) and the inputs' dtypes.
  at::Tensor grad_hidden;
  if (m == n) {
    grad_hidden = gh.to(hidden_in.scalar_type());
  } else {
    grad_hidden = at::zeros({n, hdim}, hidden_in.options());
    grad_hidden.index_copy_(0, kept.index_tensor(), gh.to(hidden_in.scalar_type()));
  }
  at::Tensor grad_weight = gw.defined() ? gw : at::empty({0}, weight_in.options());
  at::Tensor grad_bias = with_bias ? gb.to(weight_in.scalar_type()) : at::empty({0}, weight_in.options());
  return {grad_hidden, grad_weight, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(lit_align, CPU, m) {
  m.impl("linear_token_logprobs", &linear_token_logprobs);
  m.impl("linear_token_logprobs_backward", &linear_token_logprobs_backward);
}

}  // namespace lit_align::cpu
