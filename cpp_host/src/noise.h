// The seeded noise of a run, drawn as dcrt.families.common.NoiseSource draws it on the CPU: libtorch's CPU generator
// (the same code as torch.Generator().manual_seed(seed) in Python) and at::randn, x_T first, then one draw per step.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor.h"

namespace dcrt_host {

// float32 [draws, *shape]: `draws` consecutive torch.randn(shape, generator=g) calls from one generator seeded with
// `seed` (x_T, then steps' draws when eta > 0).
Tensor seeded_noise(uint64_t seed, const std::vector<int64_t>& shape, int64_t draws);

}  // namespace dcrt_host
