// The CUDA step through the dcrt::kernels library (kernels/README.md, "C++ hosts"), as the Python graph
// runner uses it: the coefficient table [8, S] and the step position live on the device, ddim_timestep
// reads the timestep at the position, cfg_combine + ddim_update do the step, ddim_advance moves it.
// Built with DCRT_HOST_CUDA only.
#include <cuda_runtime_api.h>

#include <string>

#include "dcrt_kernels.h"
#include "errors.h"
#include "step_ops.h"

namespace dcrt_host {

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw HostError(std::string(what) + " failed: " + cudaGetErrorString(status));
}

class CudaStepOps : public StepOps {
 public:
  CudaStepOps(const DDIMSchedule& schedule, int64_t n)
      : steps_(schedule.num_steps()),
        table_(Device::kCUDA, sizeof(float) * kNumCoefs * schedule.timesteps.size()),
        timesteps_(Device::kCUDA, sizeof(int64_t) * schedule.timesteps.size()),
        position_(Device::kCUDA, sizeof(int)),
        workspace_(Device::kCUDA, dcrt_cfg_workspace_bytes(n, 1)) {
    const std::vector<float> table = schedule.table();
    copy_to_device(Device::kCUDA, table_.data(), table.data(), table_.bytes(), nullptr);
    copy_to_device(Device::kCUDA, timesteps_.data(), schedule.timesteps.data(), timesteps_.bytes(), nullptr);
    const int last = steps_ - 1;  // steps run from S - 1 down to 0
    copy_to_device(Device::kCUDA, position_.data(), &last, sizeof(int), nullptr);
  }

  void timesteps(int64_t* t, int count, int i, void* stream) override {
    expect(i);
    check(dcrt_launch_ddim_timestep(reinterpret_cast<long long*>(t), timesteps_.as<const long long>(),
                                    position_.as<const int>(), count, static_cast<cudaStream_t>(stream)),
          "ddim_timestep");
  }

  void combine(float* guided, const float* out, int64_t n, const Guidance& g, void* stream) override {
    const double image_scale = g.image_guidance ? g.image_guidance_scale : 0.0;
    check(dcrt_launch_cfg_combine_f32(guided, out, n, 1, g.branches(), g.guidance_scale, image_scale,
                                      g.guidance_rescale, workspace_.as<double>(), static_cast<cudaStream_t>(stream)),
          "cfg_combine");
  }

  void update(float* x, const float* guided, const float* noise, int i, int64_t n, void* stream) override {
    expect(i);
    auto s = static_cast<cudaStream_t>(stream);
    check(dcrt_launch_ddim_update_f32(x, x, guided, noise, table_.as<const float>(), steps_,
                                      position_.as<const int>(), n, s),
          "ddim_update");
    check(dcrt_launch_ddim_advance(position_.as<int>(), s), "ddim_advance");
    next_ = i - 1;
  }

 private:
  // The device-side position advances by itself; the host's loop must visit the same positions.
  void expect(int i) const {
    if (i != next_) throw HostError("internal: CUDA step position " + std::to_string(next_) + ", asked for " +
                                    std::to_string(i));
  }

  int steps_;
  int next_ = steps_ - 1;
  Buffer table_, timesteps_, position_, workspace_;
};

}  // namespace

std::unique_ptr<StepOps> cuda_step_ops(const DDIMSchedule& schedule, int64_t n) {
  return std::make_unique<CudaStepOps>(schedule, n);
}

}  // namespace dcrt_host
