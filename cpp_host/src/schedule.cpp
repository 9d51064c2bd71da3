#include "schedule.h"

#include <cfenv>
#include <cmath>

#include "errors.h"

namespace dcrt_host {

std::vector<float> DDIMSchedule::table() const {
  std::vector<float> t;
  for (const auto& row : coefs) t.insert(t.end(), row.begin(), row.end());
  return t;
}

std::vector<int64_t> ddim_timesteps(int steps, const std::string& spacing, int num_train_steps) {
  if (steps < 1) throw HostError("steps must be >= 1, got " + std::to_string(steps));
  std::vector<int64_t> ts;
  if (spacing == "uniform") {
    const int c = num_train_steps / steps;
    if (c == 0) throw HostError("uniform spacing supports at most " + std::to_string(num_train_steps) + " steps");
    if ((num_train_steps - 1) % c == 0)
      throw HostError("uniform spacing with " + std::to_string(steps) + " steps would visit t = " +
                      std::to_string(num_train_steps) + ", which does not exist: choose another step count");
    for (int t = 0; t < num_train_steps; t += c) ts.push_back(t + 1);
    return ts;
  }
  if (spacing == "uniform_trailing") {
    // numpy's arange(1000, 0, -c): ceil(1000 / c) values start + k * delta, delta = (start - c) - start;
    // np.round rounds half to even, which is nearbyint under the default rounding mode.
    const double c = static_cast<double>(num_train_steps) / steps;
    const double start = num_train_steps, delta = (start - c) - start;
    const auto count = static_cast<int64_t>(std::ceil((0.0 - start) / -c));
    std::fesetround(FE_TONEAREST);
    for (int64_t k = count - 1; k >= 0; --k)
      ts.push_back(static_cast<int64_t>(std::nearbyint(start + static_cast<double>(k) * delta)) - 1);
    return ts;
  }
  throw HostError("unknown timestep spacing \"" + spacing + "\"; choose uniform or uniform_trailing");
}

namespace {

const Tensor& buffer(const std::map<std::string, Tensor>& buffers, const std::string& name) {
  const auto it = buffers.find(name);
  if (it == buffers.end() || it->second.dtype != DType::kFloat32)
    throw HostError("schedule.safetensors has no float32 tensor " + name);
  return it->second;
}

std::vector<float> gather(const Tensor& values, const std::vector<int64_t>& ts) {
  std::vector<float> out;
  for (int64_t t : ts) {
    if (t < 0 || t >= values.numel()) throw HostError("timestep " + std::to_string(t) + " is outside the schedule");
    out.push_back(values.f32()[t]);
  }
  return out;
}

}  // namespace

DDIMSchedule build_ddim_schedule(const std::map<std::string, Tensor>& buffers, bool v_model, int steps,
                                 const std::string& spacing, double eta) {
  const Tensor& ac = buffer(buffers, "alphas_cumprod");
  DDIMSchedule s;
  s.timesteps = ddim_timesteps(steps, spacing, static_cast<int>(ac.numel()));
  const std::vector<float> a = gather(ac, s.timesteps);
  std::vector<float> a_prev{ac.f32()[0]};  // A'_0 = alpha_bar[0], not 1 (the original's quirk)
  a_prev.insert(a_prev.end(), a.begin(), a.end() - 1);
  const size_t n = a.size();
  for (auto& row : s.coefs) row.resize(n);
  std::vector<float> sqrt_a(n), sqrt_1ma(n);
  if (v_model) {
    sqrt_a = gather(buffer(buffers, "sqrt_alphas_cumprod"), s.timesteps);
    sqrt_1ma = gather(buffer(buffers, "sqrt_one_minus_alphas_cumprod"), s.timesteps);
  }
  const bool rescaled = buffers.count("scale_arr") > 0;
  const std::vector<float> scale = rescaled ? gather(buffer(buffers, "scale_arr"), s.timesteps) : std::vector<float>();
  for (size_t i = 0; i < n; ++i) {
    // sigma in float64 from the float32 alphas, then rounded; direction in float32 (docs/sampling.md §4.5).
    const double a64 = a[i], p64 = a_prev[i];
    const float sigma = static_cast<float>(eta * std::sqrt((1.0 - p64) / (1.0 - a64) * (1.0 - a64 / p64)));
    s.coefs[kSigma][i] = sigma;
    s.coefs[kDirection][i] = std::sqrt((1.0f - a_prev[i]) - sigma * sigma);
    s.coefs[kSqrtAlphaPrev][i] = std::sqrt(a_prev[i]);
    if (v_model) {
      s.coefs[kEpsFromM][i] = sqrt_a[i];
      s.coefs[kEpsFromX][i] = sqrt_1ma[i];
      s.coefs[kX0FromX][i] = sqrt_a[i];
      s.coefs[kX0FromM][i] = sqrt_1ma[i];
    } else {
      const float sa = std::sqrt(a[i]), s1ma = std::sqrt(1.0f - a[i]);
      s.coefs[kEpsFromM][i] = 1.0f;
      s.coefs[kEpsFromX][i] = 0.0f;
      s.coefs[kX0FromX][i] = 1.0f / sa;
      s.coefs[kX0FromM][i] = s1ma / sa;
    }
    s.coefs[kX0Rescale][i] = rescaled ? scale[i == 0 ? 0 : i - 1] / scale[i] : 1.0f;
  }
  return s;
}

}  // namespace dcrt_host
