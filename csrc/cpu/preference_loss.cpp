// CPU kernels for lit_align::preference_loss and its backward (schemas: csrc/ops.cpp).
//
// One formula table for the DPO family and Bradley-Terry (lit_align/losses/preference.py documents each
// loss and its paper). With margin m = (pc - rc) - (pr - rr) (refs 0 when absent) and label smoothing e:
//   sigmoid  (1-e) softplus(-b m) + e softplus(b m)
//   robust   ((1-e) softplus(-b m) - e softplus(b m)) / (1-2e)
//   hinge    relu(1 - b m)
//   ipo      (m - 1/(2b))^2
//   bt       (1-e) softplus(-m) + e softplus(m)
//   simpo    sigmoid's formula on z = b m - gamma
// where -log sigmoid(z) = softplus(-z) = max(-z, 0) + log1p(exp(-|z|)) stays finite for any z.
// The backward returns d loss / d margin; the autograd formula (lit_align/ops/_library.py) spreads it to the
// four inputs. B is a batch of pairs: a serial loop in double is all it needs.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "checks.h"

namespace lit_align::cpu {
namespace {

enum class LossType { kSigmoid, kRobust, kHinge, kIpo, kBt, kSimpo };

LossType parse_loss_type(const std::string& name) {
  if (name == "sigmoid") return LossType::kSigmoid;
  if (name == "robust") return LossType::kRobust;
  if (name == "hinge") return LossType::kHinge;
  if (name == "ipo") return LossType::kIpo;
  if (name == "bt") return LossType::kBt;
  if (name == "simpo") return LossType::kSimpo;
  TORCH_CHECK_VALUE(false, "loss_type='", name, "'; expected one of sigmoid, robust, hinge, ipo, bt, simpo");
}

double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }

double sigmoid(double x) {
  const double t = std::exp(-std::abs(x));
  return x >= 0 ? 1.0 / (1.0 + t) : t / (1.0 + t);
}

struct LossGrad {
  double loss;
  double dloss_dm;
};

// Label-smoothed logistic loss (1-e) * -logsig(z) + e * -logsig(-z) and its derivative in z.
LossGrad logistic(double z, double e) {
  return {(1 - e) * softplus(-z) + e * softplus(z), -(1 - e) * sigmoid(-z) + e * sigmoid(z)};
}

LossGrad evaluate(LossType type, double m, double e, double beta, double gamma) {
  switch (type) {
    case LossType::kSigmoid: {
      const LossGrad l = logistic(beta * m, e);
      return {l.loss, beta * l.dloss_dm};
    }
    case LossType::kRobust: {
      const double z = beta * m, norm = 1 - 2 * e;
      return {((1 - e) * softplus(-z) - e * softplus(z)) / norm,
              beta * (-(1 - e) * sigmoid(-z) - e * sigmoid(z)) / norm};
    }
    case LossType::kHinge: {
      const double t = 1 - beta * m;
      return {std::max(t, 0.0), t > 0 ? -beta : 0.0};
    }
    case LossType::kIpo: {
      const double t = m - 1 / (2 * beta);
      return {t * t, 2 * t};
    }
    case LossType::kBt:
      return logistic(m, e);
    case LossType::kSimpo: {
      const LossGrad l = logistic(beta * m - gamma, e);
      return {l.loss, beta * l.dloss_dm};
    }
  }
  return {0, 0};
}

// The inputs as contiguous float64 [B] tensors (refs undefined when absent), after the shape checks.
struct Pairs {
  at::Tensor pc, pr, rc, rr, eps;
  LossType type;
  int64_t size;
};

Pairs check_pairs(const at::Tensor& pc, const at::Tensor& pr, const std::optional<at::Tensor>& rc,
                  const std::optional<at::Tensor>& rr, const at::Tensor& eps, double beta,
                  const std::string& loss_type) {
  Pairs p;
  p.type = parse_loss_type(loss_type);
  check_float("policy_chosen", pc);
  TORCH_CHECK_VALUE(pc.dim() == 1, "policy_chosen must be (B,), got ", pc.sizes());
  p.size = pc.size(0);
  const auto as_double = [&](const char* name, const at::Tensor& t) {
    check_float(name, t);
    check_1d(name, t, p.size);
    return t.to(at::kDouble).contiguous();
  };
  p.pc = as_double("policy_chosen", pc);
  p.pr = as_double("policy_rejected", pr);
  TORCH_CHECK_VALUE(rc.has_value() == rr.has_value(), "pass both ref_chosen and ref_rejected, or neither");
  if (rc.has_value()) {
    p.rc = as_double("ref_chosen", *rc);
    p.rr = as_double("ref_rejected", *rr);
  }
  check_float("label_smoothing", eps);
  TORCH_CHECK_VALUE(eps.numel() == 1 || (eps.dim() == 1 && eps.size(0) == p.size),
                    "label_smoothing must have shape (", p.size, ",), got ", eps.sizes());
  p.eps = eps.to(at::kDouble).reshape({-1}).expand({p.size}).contiguous();
  TORCH_CHECK_VALUE(p.type == LossType::kBt || beta > 0, "beta must be > 0, got ", beta);
  if (p.type == LossType::kRobust) {
    TORCH_CHECK_VALUE((p.eps < 0.5).all().item<bool>(), "loss_type='robust' needs label_smoothing < 0.5");
  }
  return p;
}

// margin (pc - rc) - (pr - rr) of pair k.
double margin(const Pairs& p, int64_t k) {
  double m = p.pc.const_data_ptr<double>()[k] - p.pr.const_data_ptr<double>()[k];
  if (p.rc.defined()) m -= p.rc.const_data_ptr<double>()[k] - p.rr.const_data_ptr<double>()[k];
  return m;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> preference_loss(
    const at::Tensor& pc, const at::Tensor& pr, const std::optional<at::Tensor>& rc,
    const std::optional<at::Tensor>& rr, const at::Tensor& eps, double beta, std::string loss_type, double gamma) {
  const Pairs p = check_pairs(pc, pr, rc, rr, eps, beta, loss_type);
  const auto opts = p.pc.options();
  at::Tensor loss = at::empty({p.size}, opts), chosen = at::empty({p.size}, opts), rejected = at::empty({p.size}, opts);
  const double scale = p.type == LossType::kBt ? 1.0 : beta;  // rewards: b (policy - ref), raw scores for bt
  const double *e = p.eps.const_data_ptr<double>(), *pc_p = p.pc.const_data_ptr<double>();
  const double* pr_p = p.pr.const_data_ptr<double>();
  double *l = loss.data_ptr<double>(), *c = chosen.data_ptr<double>(), *r = rejected.data_ptr<double>();
  for (int64_t k = 0; k < p.size; ++k) {
    l[k] = evaluate(p.type, margin(p, k), e[k], beta, gamma).loss;
    c[k] = scale * (pc_p[k] - (p.rc.defined() ? p.rc.const_data_ptr<double>()[k] : 0.0));
    r[k] = scale * (pr_p[k] - (p.rr.defined() ? p.rr.const_data_ptr<double>()[k] : 0.0));
  }
  const auto dtype = pc.scalar_type();
  return {loss.to(dtype), chosen.to(dtype), rejected.to(dtype)};
}

at::Tensor preference_loss_backward(const at::Tensor& grad_loss, const at::Tensor& pc, const at::Tensor& pr,
                                    const std::optional<at::Tensor>& rc, const std::optional<at::Tensor>& rr,
                                    const at::Tensor& eps, double beta, std::string loss_type, double gamma) {
  const Pairs p = check_pairs(pc, pr, rc, rr, eps, beta, loss_type);
  check_float("grad_loss", grad_loss);
  check_1d("grad_loss", grad_loss, p.size);
  const at::Tensor g = grad_loss.to(at::kDouble).contiguous();
  at::Tensor out = at::empty({p.size}, p.pc.options());  // (B,) d loss / d margin
  const double *e = p.eps.const_data_ptr<double>(), *g_p = g.const_data_ptr<double>();
  double* o = out.data_ptr<double>();
  for (int64_t k = 0; k < p.size; ++k) o[k] = g_p[k] * evaluate(p.type, margin(p, k), e[k], beta, gamma).dloss_dm;
  return out.to(pc.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(lit_align, CPU, m) {
  m.impl("preference_loss", &preference_loss);
  m.impl("preference_loss_backward", &preference_loss_backward);
}

}  // namespace lit_align::cpu
