// preference_loss on CUDA: the DPO family and Bradley-Terry, elementwise over pairs, one thread per pair.
//
// With m = (pc - pr) - rc + rr (refs 0 when absent), e the label smoothing, b = beta, g = gamma, and the
// numerically stable logsig(x) = min(x, 0) - log1p(exp(-|x|)) (formulas: lit_align/losses/preference.py):
//   sigmoid / bt / simpo:  (1-e) * -logsig(z) + e * -logsig(-z),  z = b*m, m, b*m - g
//   robust:                ((1-e) * -logsig(z) - e * -logsig(-z)) / (1 - 2e),  z = b*m
//   hinge:                 relu(1 - b*m);     ipo: (m - 1/(2b))^2
// One device function gives the loss and d loss / d m, so forward and backward cannot drift apart.
// Arithmetic in float32 (float64 for float64).
#include "kernels.h"
#include "rows.cuh"

namespace lit_align::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float log1p_(float x) { return log1pf(x); }
__device__ __forceinline__ double log1p_(double x) { return log1p(x); }

template <typename S>
__device__ __forceinline__ S log_sigmoid(S x) { return fmin(x, S(0)) - log1p_(exp_(-fabs(x))); }

template <typename S>
__device__ __forceinline__ S sigmoid(S x) { return S(1) / (S(1) + exp_(-x)); }

template <typename S>
struct LossGrad {
  S loss;
  S dloss_dm;
};

template <typename S>
__device__ __forceinline__ LossGrad<S> loss_and_grad(LossType type, S m, S e, S beta, S gamma) {
  switch (type) {
    case LossType::kHinge: {
      const S h = S(1) - beta * m;
      return {h > S(0) ? h : S(0), h > S(0) ? -beta : S(0)};
    }
    case LossType::kIpo: {
      const S d = m - S(1) / (S(2) * beta);
      return {d * d, S(2) * d};
    }
    case LossType::kRobust: {
      const S z = beta * m;
      const S scale = S(1) / (S(1) - S(2) * e);
      return {(-(S(1) - e) * log_sigmoid(z) + e * log_sigmoid(-z)) * scale,
              (-(S(1) - e) * sigmoid(-z) - e * sigmoid(z)) * beta * scale};
    }
    default: {  // sigmoid, bt, simpo: z = a*m - c
      const S a = type == LossType::kBt ? S(1) : beta;
      const S z = a * m - (type == LossType::kSimpo ? gamma : S(0));
      return {-(S(1) - e) * log_sigmoid(z) - e * log_sigmoid(-z), (-(S(1) - e) * sigmoid(-z) + e * sigmoid(z)) * a};
    }
  }
}

// The margin in the reference's order of operations: ((pc - pr) - rc) + rr.
template <typename T>
__device__ __forceinline__ StatT<T> margin_at(const PreferenceArgs<T>& a, int64_t i) {
  using S = StatT<T>;
  S m = to_stat<S>(a.policy_chosen[i]) - to_stat<S>(a.policy_rejected[i]);
  if (a.ref_chosen != nullptr) m -= to_stat<S>(a.ref_chosen[i]);
  if (a.ref_rejected != nullptr) m += to_stat<S>(a.ref_rejected[i]);
  return m;
}

template <typename T>
__device__ __forceinline__ LossGrad<StatT<T>> pair_loss(const PreferenceArgs<T>& a, int64_t i) {
  using S = StatT<T>;
  return loss_and_grad<S>(a.loss_type, margin_at(a, i), to_stat<S>(a.label_smoothing[i]), static_cast<S>(a.beta),
                          static_cast<S>(a.gamma));
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
preference_loss_forward_kernel(const PreferenceArgs<T> a, T* __restrict__ loss, T* __restrict__ chosen_rewards,
                               T* __restrict__ rejected_rewards) {
  using S = StatT<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= a.n) return;
  loss[i] = from_stat<T>(pair_loss(a, i).loss);
  const S scale = a.loss_type == LossType::kBt ? S(1) : static_cast<S>(a.beta);
  S chosen = to_stat<S>(a.policy_chosen[i]);
  S rejected = to_stat<S>(a.policy_rejected[i]);
  if (a.ref_chosen != nullptr) chosen -= to_stat<S>(a.ref_chosen[i]);
  if (a.ref_rejected != nullptr) rejected -= to_stat<S>(a.ref_rejected[i]);
  chosen_rewards[i] = from_stat<T>(scale * chosen);
  rejected_rewards[i] = from_stat<T>(scale * rejected);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
preference_loss_backward_kernel(const PreferenceArgs<T> a, const T* __restrict__ grad_loss,
                                T* __restrict__ grad_margin) {
  using S = StatT<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= a.n) return;
  grad_margin[i] = from_stat<T>(to_stat<S>(grad_loss[i]) * pair_loss(a, i).dloss_dm);
}

unsigned blocks_for(int64_t items) { return static_cast<unsigned>((items + kThreads - 1) / kThreads); }

}  // namespace

template <typename T>
void preference_loss_forward(const PreferenceArgs<T>& args, T* loss, T* chosen_rewards, T* rejected_rewards,
                             cudaStream_t stream) {
  if (args.n == 0) return;
  preference_loss_forward_kernel<T><<<blocks_for(args.n), kThreads, 0, stream>>>(args, loss, chosen_rewards,
                                                                                 rejected_rewards);
}

template <typename T>
void preference_loss_backward(const PreferenceArgs<T>& args, const T* grad_loss, T* grad_margin, cudaStream_t stream) {
  if (args.n == 0) return;
  preference_loss_backward_kernel<T><<<blocks_for(args.n), kThreads, 0, stream>>>(args, grad_loss, grad_margin);
}

#define LIT_ALIGN_INSTANTIATE(T)                                                                         \
  template void preference_loss_forward<T>(const PreferenceArgs<T>&, T*, T*, T*, cudaStream_t);         \
  template void preference_loss_backward<T>(const PreferenceArgs<T>&, const T*, T*, cudaStream_t);
LIT_ALIGN_FOR_EACH_DTYPE(LIT_ALIGN_INSTANTIATE)
#undef LIT_ALIGN_INSTANTIATE

}  // namespace lit_align::cuda
