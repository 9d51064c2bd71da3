// What a denoising step does around the UNet, on the engine's device: the UNet's timestep input, the
// guidance combine and the DDIM update. The CPU implementation calls step.h; the CUDA one launches the
// dcrt::kernels library (kernels/dcrt_kernels.h), whose kernels name the same Python functions as reference.
#pragma once

#include <cstdint>
#include <memory>

#include "device.h"
#include "schedule.h"
#include "step.h"

namespace dcrt_host {

class StepOps {
 public:
  virtual ~StepOps() = default;
  // t[0..count) = timesteps[i]: the UNet's timestep for every row of its batch.
  virtual void timesteps(int64_t* t, int count, int i, void* stream) = 0;
  // guided [n] = guidance combine of out [branches * n] (branch-major).
  virtual void combine(float* guided, const float* out, int64_t n, const Guidance& guidance, void* stream) = 0;
  // x [n] = DDIM update of x at position i with the guided output; noise [n] or null (eta = 0).
  virtual void update(float* x, const float* guided, const float* noise, int i, int64_t n, void* stream) = 0;
};

std::unique_ptr<StepOps> cpu_step_ops(const DDIMSchedule& schedule);
// Built with DCRT_HOST_CUDA only (step_cuda.cpp); otherwise throws with the CMake option to set.
std::unique_ptr<StepOps> cuda_step_ops(const DDIMSchedule& schedule, int64_t n);

inline std::unique_ptr<StepOps> step_ops(Device device, const DDIMSchedule& schedule, int64_t n) {
  return device == Device::kCPU ? cpu_step_ops(schedule) : cuda_step_ops(schedule, n);
}

}  // namespace dcrt_host
