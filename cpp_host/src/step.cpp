#include "step.h"

#include <cmath>

namespace dcrt_host {

namespace {

// Unbiased (N - 1) standard deviation, accumulated in double as torch's CPU std does, rounded to float32.
float std_unbiased(const float* v, int64_t n) {
  double sum = 0.0;
  for (int64_t k = 0; k < n; ++k) sum += v[k];
  const double mean = sum / static_cast<double>(n);
  double sq = 0.0;
  for (int64_t k = 0; k < n; ++k) sq += (v[k] - mean) * (v[k] - mean);
  return static_cast<float>(std::sqrt(sq / static_cast<double>(n - 1)));
}

}  // namespace

void combine_guidance(float* guided, const float* out, int64_t n, int batch, const Guidance& guidance) {
  const int branches = guidance.branches();
  const int64_t stride = static_cast<int64_t>(batch) * n;  // one branch
  // Python float scalars meet float32 tensors: torch computes in float32 with the scalar rounded to float.
  const float scale = static_cast<float>(guidance.guidance_scale);
  const float image_scale = static_cast<float>(guidance.image_guidance_scale);
  for (int64_t k = 0; k < stride; ++k) {
    const float c = out[k];
    if (branches == 1) {
      guided[k] = c;
    } else if (branches == 2) {
      const float u = out[stride + k];
      guided[k] = u + scale * (c - u);
    } else {
      const float u = out[stride + k], im = out[2 * stride + k];
      guided[k] = (u + image_scale * (im - u)) + scale * (c - im);
    }
  }
  if (branches == 1 || guidance.guidance_rescale <= 0.0) return;
  const float rescale = static_cast<float>(guidance.guidance_rescale);
  const float keep = static_cast<float>(1.0 - guidance.guidance_rescale);  // (1.0 - rescale) in Python's double
  for (int b = 0; b < batch; ++b) {
    float* g = guided + b * n;
    const float ratio = std_unbiased(out + b * n, n) / std_unbiased(g, n);
    for (int64_t k = 0; k < n; ++k) g[k] = (rescale * g[k]) * ratio + keep * g[k];
  }
}

void ddim_step(float* x_prev, const float* x, const float* m, const float* noise, const DDIMSchedule& schedule,
               int i, int64_t n) {
  const auto& c = schedule.coefs;
  const float em = c[kEpsFromM][i], ex = c[kEpsFromX][i], xx = c[kX0FromX][i], xm = c[kX0FromM][i];
  const float rs = c[kX0Rescale][i], ap = c[kSqrtAlphaPrev][i], dir = c[kDirection][i], sig = c[kSigma][i];
  for (int64_t k = 0; k < n; ++k) {
    const float eps = em * m[k] + ex * x[k];
    const float x0 = (xx * x[k] - xm * m[k]) * rs;
    float out = ap * x0 + dir * eps;
    if (noise != nullptr) out = out + sig * noise[k];
    x_prev[k] = out;
  }
}

}  // namespace dcrt_host
