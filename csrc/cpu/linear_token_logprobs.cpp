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
// tile at a time) and gradients accumulate in float32. Each row keeps (raw max, log-sum), not one lse
// (row_softmax.h says why).
// batch_invariant: the GEMMs' blocking depends on the batch shape and the dynamic tile order on timing, so a
// row's log-prob can change with its neighbours. In this mode the threads take fixed chunks of kInvariantRows
// rows, walk fixed vocabulary tiles of kInvariantVocabTile columns in order, and compute the logits and the
// hidden-state gradient with the fixed-order products of fixed_order.h: a row's log-prob and grad_hidden are
// bitwise the same whatever else is in the batch. grad_weight (a sum over rows) comes from a second,
// vocabulary-parallel pass over the same logits (one thread per tile, rows in order): deterministic for a given
// batch, not batch invariant. The price: the fixed-order products are slower than MKL's, and the backward
// recomputes the logits twice when the weight needs a gradient (bench_ops.py measures it).
// Extra memory: O(N*H) for the kept rows and grad_hidden, plus O(tile) per thread (and the weight in float32
// for bf16/half in batch-invariant mode: O(V*H)).
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
#include "fixed_order.h"
#include "row_softmax.h"

namespace lit_align::cpu {
namespace {

// Tile sizes, measured on a 2-core AVX2 machine at H = 512 (MKL sgemm): a vocabulary tile of up to 1024
// columns, and row chunks of kChunkElems logits (1 MiB of float32: one core's L2).
constexpr int64_t kMaxVocabTile = 1024;
constexpr int64_t kMinVocabTile = 64;
constexpr int64_t kTilesPerThread = 4;  // enough tiles for the shared counter to balance the threads
constexpr int64_t kChunkElems = int64_t(256) * 1024;
// The batch-invariant mode's fixed blocking: row chunks (a thread's unit of work) and vocabulary tiles.
constexpr int64_t kInvariantRows = 16;
constexpr int64_t kInvariantVocabTile = 256;

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
  // fixed_tile > 0: tiles of that width (the batch-invariant mode); otherwise about kTilesPerThread per thread.
  Tiling(int64_t m, int64_t v, int64_t fixed_tile = 0) : rows(m), vocab(v) {
    const int64_t threads = at::get_num_threads();
    const int64_t per_thread = (v + kTilesPerThread * threads - 1) / (kTilesPerThread * threads);
    vocab_tile = fixed_tile > 0 ? fixed_tile
                                : std::clamp<int64_t>((per_thread + 15) / 16 * 16, kMinVocabTile, kMaxVocabTile);
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
// computed into a private buffer by a BLAS GEMM, or by fixed_order_logits when `fixed_order`.
class TileLogits {
 public:
  TileLogits(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
             const Tiling& tiling, int64_t tile, bool fixed_order = false)
      : hidden_(hidden), v0_(tile * tiling.vocab_tile), v_(tiling.tile_width(tile)), fixed_order_(fixed_order) {
    const auto dtype = hidden.scalar_type();
    w_ = weight.narrow(0, v0_, v_).to(dtype).contiguous();                              // (v, H): a view for f32/f64
    if (bias.has_value()) b_ = bias->narrow(0, v0_, v_).to(dtype).contiguous();         // (v,)
    buffer_ = at::empty({tiling.row_chunk * v_}, hidden.options());
  }
  int64_t begin() const { return v0_; }
  int64_t width() const { return v_; }
  const at::Tensor& weight() const { return w_; }

  at::Tensor logits(int64_t r0, int64_t r) {  // (r, v), contiguous
    at::Tensor z = buffer_.narrow(0, 0, r * v_).view({r, v_});
    const at::Tensor h = hidden_.narrow(0, r0, r);  // (r, H)
    if (fixed_order_) {
      AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "fixed_order_logits", [&] {
        fixed_order_logits<scalar_t>(h.const_data_ptr<scalar_t>(), r, w_.const_data_ptr<scalar_t>(), v_, h.size(1),
                                     b_.defined() ? b_.const_data_ptr<scalar_t>() : nullptr,
                                     z.data_ptr<scalar_t>(), v_);
      });
    } else if (b_.defined()) {
      at::addmm_out(z, b_.expand({r, v_}), h, w_.t());
    } else {
      at::mm_out(z, h, w_.t());
    }
    return z;
  }

 private:
  const at::Tensor& hidden_;
  int64_t v0_, v_;
  bool fixed_order_;
  at::Tensor w_, b_, buffer_;
};

// Runs fn(chunk) for every chunk of kInvariantRows kept rows (a thread takes whole chunks: a row never shares
// its work with another thread, and its neighbours in the chunk do not change what is computed for it).
template <typename Fn>
void for_each_row_chunk(int64_t rows, const Fn& fn) {
  const int64_t chunks = (rows + kInvariantRows - 1) / kInvariantRows;
  const at::ThreadLocalState caller_state;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard state_guard(caller_state);
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t r0 = chunk * kInvariantRows;
      fn(r0, std::min(kInvariantRows, rows - r0));
    }
  });
}

// The batch-invariant forward and hidden-gradient passes see the whole weight (and bias) in the compute dtype.
struct FixedOrderWeight {
  at::Tensor weight, bias;  // (V, H), (V,) or undefined: views for float32/float64 inputs
  FixedOrderWeight(const at::Tensor& w, const std::optional<at::Tensor>& b, at::ScalarType dtype)
      : weight(w.to(dtype).contiguous()), bias(b.has_value() ? b->to(dtype).contiguous() : at::Tensor()) {}
  template <typename A>
  void logits(const A* h, int64_t r, int64_t v0, int64_t v, A* z) const {  // z (r, v) = h (r, H) @ W[v0:v0+v].T
    const int64_t hdim = weight.size(1);
    fixed_order_logits<A>(h, r, weight.const_data_ptr<A>() + v0 * hdim, v, hdim,
                          bias.defined() ? bias.const_data_ptr<A>() + v0 : nullptr, z, v);
  }
};

// Per kept row: the running statistics (raw max, sum) and the raw target logit, filled by one of the two passes.
template <typename A>
struct RowStats {
  std::vector<OnlineLSE<A>> stats;
  std::vector<A> target;  // z_y, written by the one tile that holds the label
  explicit RowStats(int64_t m) : stats(m), target(m, A(0)) {}
};

// Default mode: vocabulary tiles on a shared counter, BLAS GEMMs; each worker folds its tiles into its own
// statistics per row, merged in worker order.
template <typename A>
void forward_tiles(const KeptRows& kept, const at::Tensor& weight, const std::optional<at::Tensor>& bias, A scale,
                   RowStats<A>& out) {
  const int64_t m = kept.size();
  const Tiling tiling(m, weight.size(0));
  std::vector<std::vector<OnlineLSE<A>>> partial(tiling.workers, std::vector<OnlineLSE<A>>(m));
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
        if (col >= 0 && col < v) out.target[r0 + i] = row[col];
      }
    }
  });
  for (int64_t k = 0; k < m; ++k) {
    for (const auto& p : partial) out.stats[k].merge(p[k], scale);
  }
}

// Batch-invariant mode: fixed row chunks, fixed vocabulary tiles in order, fixed-order logits.
template <typename A>
void forward_fixed_order(const KeptRows& kept, const FixedOrderWeight& w, A scale, RowStats<A>& out) {
  const int64_t hdim = kept.hidden.size(1), vocab = w.weight.size(0);
  const A* h = kept.hidden.const_data_ptr<A>();
  for_each_row_chunk(kept.size(), [&](int64_t r0, int64_t r) {
    std::vector<A> buffer(kInvariantRows * kInvariantVocabTile);
    for (int64_t v0 = 0; v0 < vocab; v0 += kInvariantVocabTile) {
      const int64_t v = std::min(kInvariantVocabTile, vocab - v0);
      w.logits(h + r0 * hdim, r, v0, v, buffer.data());  // (r, v)
      for (int64_t i = 0; i < r; ++i) {
        const A* row = buffer.data() + i * v;
        online_lse_update(row, v, scale, out.stats[r0 + i]);
        const int64_t col = kept.labels[r0 + i] - v0;
        if (col >= 0 && col < v) out.target[r0 + i] = row[col];
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_token_logprobs(
    const at::Tensor& hidden_in, const at::Tensor& weight_in, const std::optional<at::Tensor>& bias_in,
    const at::Tensor& labels_in, int64_t ignore_index, double temperature, bool batch_invariant) {
  check_inputs(hidden_in, weight_in, bias_in, temperature);
  const int64_t n = hidden_in.size(0), vocab = weight_in.size(0);
  const at::Tensor labels = checked_labels(labels_in, n, vocab, ignore_index);
  const auto stat = acc_dtype(hidden_in);
  at::Tensor logp = at::zeros({n}, hidden_in.options().dtype(stat));  // (N,): ignored rows stay 0
  at::Tensor row_max = at::zeros({n}, logp.options());                // (N,)
  at::Tensor log_sum = at::zeros({n}, logp.options());                // (N,)
  const KeptRows kept = keep_rows(hidden_in, labels, ignore_index);
  const int64_t m = kept.size();
  if (m == 0 || vocab == 0) return {logp, row_max, log_sum};
  const at::Tensor weight = weight_in.contiguous();
  const std::optional<at::Tensor> bias = bias_in.has_value() ? std::optional(bias_in->contiguous()) : std::nullopt;
  AT_DISPATCH_FLOATING_TYPES(stat, "linear_token_logprobs", [&] {
    using A = scalar_t;
    const A scale = static_cast<A>(1.0 / temperature);
    RowStats<A> rows(m);
    if (batch_invariant) {
      forward_fixed_order(kept, FixedOrderWeight(weight, bias, stat), scale, rows);
    } else {
      forward_tiles(kept, weight, bias, scale, rows);
    }
    A* logp_out = logp.data_ptr<A>();
    A* max_out = row_max.data_ptr<A>();
    A* log_sum_out = log_sum.data_ptr<A>();
    for (int64_t k = 0; k < m; ++k) {
      const int64_t i = kept.index[k];
      max_out[i] = rows.stats[k].max;
      log_sum_out[i] = rows.stats[k].log_sum();
      logp_out[i] = log_prob(rows.target[k], scale, max_out[i], log_sum_out[i]);
    }
  });
  return {logp, row_max, log_sum};
}

// The backward's per kept row coefficients: D = coef * softmax + onehot * (label entry), softmax from the row's
// (max, log_sum); the label entry (g_lse * p_y + g_logp * (1 - p_y)) / T with 1 - p_y from one_minus_p.
template <typename A>
struct RowGrads {
  std::vector<A> coef, g_logp, g_lse, max, log_sum;  // coef = (g_lse - g_logp) / T; the others unscaled
  RowGrads(const KeptRows& kept, const at::Tensor& g_logp_in, const at::Tensor& g_log_sum_in,
           const at::Tensor& row_max, const at::Tensor& log_sum_in, A scale) {
    const int64_t m = kept.size();
    const A *gp = g_logp_in.const_data_ptr<A>(), *gl = g_log_sum_in.const_data_ptr<A>();
    const A *mx = row_max.const_data_ptr<A>(), *ls = log_sum_in.const_data_ptr<A>();
    for (auto* v : {&coef, &g_logp, &g_lse, &max, &log_sum}) v->resize(m);
    for (int64_t k = 0; k < m; ++k) {
      const int64_t i = kept.index[k];
      coef[k] = (gl[i] - gp[i]) * scale;
      g_logp[k] = gp[i];
      g_lse[k] = gl[i];
      max[k] = mx[i];
      log_sum[k] = ls[i];
    }
  }
  // Turns the logits z [r, v] of kept rows r0.. and columns v0.. into D, in place.
  void logits_to_grad(A* z, int64_t r0, int64_t r, int64_t v0, int64_t v, const KeptRows& kept, A scale) const {
    for (int64_t i = 0; i < r; ++i) {
      A* row = z + i * v;
      const int64_t k = r0 + i;
      const int64_t col = kept.labels[k] - v0;
      const bool has_label = col >= 0 && col < v;
      const A log_p = has_label ? log_prob(row[col], scale, max[k], log_sum[k]) : A(0);
      softmax_scaled(row, v, scale, max[k], log_sum[k], coef[k], row);
      if (has_label) {
        const A p = std::exp(log_p);
        row[col] = (g_lse[k] * p + g_logp[k] * one_minus_p(p, log_p)) * scale;
      }
    }
  }
};

// Default mode: one pass over vocabulary tiles (shared counter). The tile's thread owns its rows of grad_weight
// (gw_tile += D^T @ h) and adds D @ W_tile to grad_hidden under a per-row-chunk lock. With fixed_order (the
// batch-invariant mode's weight pass) the logits come from the fixed-order product, as in the hidden pass, and
// grad_hidden is not touched (gh undefined).
template <typename A>
void backward_tiles(const KeptRows& kept, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                    const RowGrads<A>& rg, A scale, bool fixed_order, at::Tensor& gh, at::Tensor& gw, at::Tensor& gb) {
  const int64_t m = kept.size(), hdim = kept.hidden.size(1);
  const Tiling tiling(m, weight.size(0), fixed_order ? kInvariantVocabTile : 0);
  std::vector<std::mutex> chunk_locks((m + tiling.row_chunk - 1) / tiling.row_chunk);  // guard gh's row chunks
  const auto stat = kept.hidden.scalar_type();
  for_each_tile(tiling, [&](int64_t /*worker*/, int64_t tile) {
    TileLogits tl(kept.hidden, weight, bias, tiling, tile, fixed_order);
    const int64_t v0 = tl.begin(), v = tl.width();
    // This tile's rows of grad_weight, accumulated in the compute dtype.
    at::Tensor gw_tile;
    if (gw.defined()) {
      gw_tile = gw.scalar_type() == stat ? gw.narrow(0, v0, v) : at::empty({v, hdim}, kept.hidden.options());
    }
    at::Tensor gh_part = gh.defined() ? at::empty({tiling.row_chunk, hdim}, gh.options()) : at::Tensor();
    for (int64_t r0 = 0; r0 < m; r0 += tiling.row_chunk) {
      const int64_t r = std::min(tiling.row_chunk, m - r0);
      at::Tensor d = tl.logits(r0, r);  // (r, v): z, turned in place into D
      rg.logits_to_grad(d.data_ptr<A>(), r0, r, v0, v, kept, scale);
      const at::Tensor h_rows = kept.hidden.narrow(0, r0, r);  // (r, H)
      if (gw_tile.defined()) {
        if (r0 == 0) {
          at::mm_out(gw_tile, d.t(), h_rows);
        } else {
          gw_tile.addmm_(d.t(), h_rows);
        }
      }
      if (gb.defined()) gb.narrow(0, v0, v).add_(d.sum(0));
      if (gh.defined()) {
        at::Tensor part = gh_part.narrow(0, 0, r);
        at::mm_out(part, d, tl.weight());  // (r, H)
        std::lock_guard<std::mutex> guard(chunk_locks[r0 / tiling.row_chunk]);
        gh.narrow(0, r0, r).add_(part);
      }
    }
    if (gw_tile.defined() && gw.scalar_type() != stat) gw.narrow(0, v0, v).copy_(gw_tile);
  });
}

// Batch-invariant mode, the hidden pass: fixed row chunks, vocabulary tiles in order, fixed-order logits and
// grad_hidden (each chunk's thread owns its rows of gh: no lock, one order).
template <typename A>
void hidden_grad_fixed_order(const KeptRows& kept, const FixedOrderWeight& w, const RowGrads<A>& rg, A scale,
                             at::Tensor& gh) {
  const int64_t hdim = kept.hidden.size(1), vocab = w.weight.size(0);
  const A* h = kept.hidden.const_data_ptr<A>();
  const A* weight = w.weight.const_data_ptr<A>();
  A* out = gh.data_ptr<A>();
  for_each_row_chunk(kept.size(), [&](int64_t r0, int64_t r) {
    std::vector<A> buffer(kInvariantRows * kInvariantVocabTile);
    for (int64_t v0 = 0; v0 < vocab; v0 += kInvariantVocabTile) {
      const int64_t v = std::min(kInvariantVocabTile, vocab - v0);
      w.logits(h + r0 * hdim, r, v0, v, buffer.data());  // (r, v)
      rg.logits_to_grad(buffer.data(), r0, r, v0, v, kept, scale);
      fixed_order_accumulate<A>(buffer.data(), r, v, weight + v0 * hdim, v, hdim, out + r0 * hdim);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_token_logprobs_backward(
    const at::Tensor& grad_logp_in, const at::Tensor& grad_log_sum_in, const at::Tensor& hidden_in,
    const at::Tensor& weight_in, const std::optional<at::Tensor>& bias_in, const at::Tensor& labels_in,
    const at::Tensor& row_max_in, const at::Tensor& log_sum_in, int64_t ignore_index, double temperature,
    bool compute_weight_grad, bool batch_invariant) {
  check_inputs(hidden_in, weight_in, bias_in, temperature);
  const int64_t n = hidden_in.size(0), hdim = hidden_in.size(1), vocab = weight_in.size(0);
  const at::Tensor labels = checked_labels(labels_in, n, vocab, ignore_index);
  const std::pair<const char*, const at::Tensor*> vectors[] = {
      {"grad_logp", &grad_logp_in}, {"grad_log_sum", &grad_log_sum_in}, {"row_max", &row_max_in},
      {"log_sum", &log_sum_in}};
  for (const auto& [name, t] : vectors) {
    check_float(name, *t);
    check_1d(name, *t, n);
  }
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
    AT_DISPATCH_FLOATING_TYPES(stat, "linear_token_logprobs_backward", [&] {
      using A = scalar_t;
      const A scale = static_cast<A>(1.0 / temperature);
      const auto as_stat = [&](const at::Tensor& t) { return t.to(stat).contiguous(); };
      const RowGrads<A> rg(kept, as_stat(grad_logp_in), as_stat(grad_log_sum_in), as_stat(row_max_in),
                           as_stat(log_sum_in), scale);
      if (batch_invariant) {
        hidden_grad_fixed_order(kept, FixedOrderWeight(weight, bias, stat), rg, scale, gh);
        at::Tensor no_gh;
        if (gw.defined() || gb.defined()) backward_tiles(kept, weight, bias, rg, scale, true, no_gh, gw, gb);
      } else {
        backward_tiles(kept, weight, bias, rg, scale, false, gh, gw, gb);
      }
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
