// The seeded noise of a run, drawn as dcrt.families.common.NoiseSource draws it: libtorch's generator of the run's
// device (the same code as torch.Generator(device).manual_seed(seed) in Python; CPU and CUDA generators differ) and
// at::randn, x_T first, then one draw per step.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor.h"

namespace dcrt_host {

// float32 [draws, *shape] in host memory: `draws` consecutive torch.randn(shape, generator=g) calls from one generator
// seeded with `seed` (x_T, then the steps' draws when eta > 0), on the CPU or (`cuda`) on the current CUDA device.
Tensor seeded_noise(uint64_t seed, const std::vector<int64_t>& shape, int64_t draws, bool cuda = false);

}  // namespace dcrt_host
