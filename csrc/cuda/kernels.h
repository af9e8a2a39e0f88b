// Launchers of lit_align's CUDA kernels, on raw device pointers: no torch headers here, so that every .cu file
// compiles standalone with `nvcc -c` and the torch bindings (*_binding.cpp) stay a thin layer of checks,
// dtype dispatch and cuBLAS tiles around them.
//
// T is the tensor dtype (double, float, __nv_bfloat16, __half); StatT<T> the statistics dtype: double for
// double, float otherwise. All tensors are contiguous and row-major. Each launcher only enqueues work on
// `stream` (no synchronisation, no allocation); the caller checks cudaGetLastError() after it.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace lit_align::cuda {

template <typename T>
using StatT = std::conditional_t<std::is_same_v<T, double>, double, float>;

// X(T) for every supported tensor dtype: the .cu files instantiate their launchers with it.
#define LIT_ALIGN_FOR_EACH_DTYPE(X) X(double) X(float) X(__nv_bfloat16) X(__half)

// ---- token_logprobs.cu -----------------------------------------------------------------------------------
// logits [rows, vocab], labels [rows] -> logp, row_max (raw max of the row), log_sum (log sum_j
// exp((x_j - row_max) / temperature)) [rows] each; rows whose label == ignore_index get exactly 0 in all three.
// A label outside [0, vocab) gives NaN and lowers *first_bad_row (initialised by the caller to `rows`) to that
// row index, for the caller to report.
template <typename T>
void token_logprobs_forward(const T* logits, const int64_t* labels, int64_t rows, int64_t vocab,
                            int64_t ignore_index, double temperature, StatT<T>* logp, StatT<T>* row_max,
                            StatT<T>* log_sum, int64_t* first_bad_row, cudaStream_t stream);

// -> grad_logits [rows, vocab] = (grad_logp * onehot + (grad_log_sum - grad_logp) * softmax) / temperature,
// softmax rebuilt from the saved (row_max, log_sum); zero rows where label == ignore_index.
template <typename T>
void token_logprobs_backward(const T* logits, const int64_t* labels, const StatT<T>* row_max,
                             const StatT<T>* log_sum, const StatT<T>* grad_logp, const StatT<T>* grad_log_sum,
                             int64_t rows, int64_t vocab, int64_t ignore_index, double temperature, T* grad_logits,
                             cudaStream_t stream);

// ---- linear_token_logprobs.cu: the per-tile work around the binding's cuBLAS tiles -------------------------
// `tile` [rows, cols] holds hidden_c @ weight[col0 : col0 + cols].T for the compacted (non-ignored) rows;
// bias_tile (nullable) points at bias[col0]; labels [rows] are the compacted rows' labels (all valid).
//
// Folds the tile into running (max, sum) statistics per row (reduce.cuh; first: start them) and records the
// raw target logit of rows whose label falls in [col0, col0 + cols).
template <typename T>
void linear_fold_tile(const StatT<T>* tile, const T* bias_tile, const int64_t* labels, int64_t rows, int64_t cols,
                      int64_t col0, double temperature, bool first, StatT<T>* run_max, StatT<T>* run_sum,
                      StatT<T>* target, cudaStream_t stream);

// After the last tile: logp, row_max, log_sum at row_index[i] for each compacted row i.
template <typename S>
void linear_finalize(const S* run_max, const S* run_sum, const S* target, const int64_t* row_index, int64_t rows,
                     double temperature, S* logp, S* row_max, S* log_sum, cudaStream_t stream);

// Backward tile: grad_tile = (grad_logp * onehot + (grad_log_sum - grad_logp) * p) / T with
// p = exp((z - row_max) / T - log_sum), z = tile + bias, in T (grad_tile may alias tile when T == StatT<T>);
// grad_bias_tile (nullable, float32/64, points at grad_bias[col0]) += the column sums of the unrounded values.
// row_max, log_sum, grad_logp, grad_log_sum and labels are [rows] (the compacted rows).
template <typename T>
void linear_grad_tile(const StatT<T>* tile, const T* bias_tile, const int64_t* labels, const StatT<T>* row_max,
                      const StatT<T>* log_sum, const StatT<T>* grad_logp, const StatT<T>* grad_log_sum, int64_t rows,
                      int64_t cols, int64_t col0, double temperature, T* grad_tile, StatT<T>* grad_bias_tile,
                      cudaStream_t stream);

// ---- sequence_logprobs.cu ---------------------------------------------------------------------------------
// Tokens per segment: count_ws [num_segments] (zeroed here) += 1 for each id in [0, num_segments).
void segment_counts(const int64_t* segment_ids, int64_t n, int64_t num_segments, int32_t* count_ws,
                    cudaStream_t stream);

// values [n] -> out [num_segments]: the sum per segment, or the mean over its tokens (0 for an empty segment),
// deterministic and batch invariant: `order` [n] lists the tokens sorted by segment id (a stable sort: token
// order within a segment), segment s owns order[starts[s] : starts[s] + counts[s]] and one warp sums them in a
// fixed lane order.
template <typename T>
void sequence_logprobs_forward(const T* values, const int64_t* order, const int64_t* starts, const int32_t* counts,
                               int64_t num_segments, bool mean, T* out, cudaStream_t stream);

// grad [num_segments] -> grad_values [n] (grad of the token's segment, / its count for the mean; 0 if skipped).
// count_ws [num_segments] is scratch, used only when mean.
template <typename T>
void sequence_logprobs_backward(const T* grad, const int64_t* segment_ids, int64_t n, int64_t num_segments, bool mean,
                                T* grad_values, int32_t* count_ws, cudaStream_t stream);

// ---- preference_loss.cu ----------------------------------------------------------------------------------
// The order of lit_align.ops.LOSS_TYPES (lit_align/losses/preference.py LOSSES).
enum class LossType : int { kSigmoid = 0, kRobust = 1, kHinge = 2, kIpo = 3, kBt = 4, kSimpo = 5 };

// [n] each; ref_chosen / ref_rejected nullable (taken as 0); label_smoothing [n].
template <typename T>
struct PreferenceArgs {
  const T* policy_chosen;
  const T* policy_rejected;
  const T* ref_chosen;
  const T* ref_rejected;
  const T* label_smoothing;
  int64_t n;
  double beta;
  double gamma;
  LossType loss_type;
};

// -> loss [n], chosen_rewards [n], rejected_rewards [n]
template <typename T>
void preference_loss_forward(const PreferenceArgs<T>& args, T* loss, T* chosen_rewards, T* rejected_rewards,
                             cudaStream_t stream);

// -> grad_margin [n] = grad_loss * d loss / d margin, margin = (pc - rc) - (pr - rr)
template <typename T>
void preference_loss_backward(const PreferenceArgs<T>& args, const T* grad_loss, T* grad_margin, cudaStream_t stream);

}  // namespace lit_align::cuda
