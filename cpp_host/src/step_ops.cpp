#include "step_ops.h"

#include "errors.h"

namespace dcrt_host {

namespace {

class CpuStepOps : public StepOps {
 public:
  explicit CpuStepOps(const DDIMSchedule& schedule) : schedule_(schedule) {}

  void timesteps(int64_t* t, int count, int i, void*) override {
    for (int k = 0; k < count; ++k) t[k] = schedule_.timesteps[static_cast<size_t>(i)];
  }

  void combine(float* guided, const float* out, int64_t n, const Guidance& guidance, void*) override {
    combine_guidance(guided, out, n, 1, guidance);
  }

  void update(float* x, const float* guided, const float* noise, int i, int64_t n, void*) override {
    ddim_step(x, x, guided, noise, schedule_, i, n);
  }

 private:
  const DDIMSchedule& schedule_;
};

}  // namespace

std::unique_ptr<StepOps> cpu_step_ops(const DDIMSchedule& schedule) { return std::make_unique<CpuStepOps>(schedule); }

#ifndef DCRT_HOST_CUDA
std::unique_ptr<StepOps> cuda_step_ops(const DDIMSchedule&, int64_t) {
  throw HostError("this dcrt_host was built without CUDA: rebuild with -DDCRT_HOST_CUDA=ON, or use --device cpu");
}
#endif

}  // namespace dcrt_host
