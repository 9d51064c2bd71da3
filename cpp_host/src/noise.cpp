#include "noise.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <cstring>

namespace dcrt_host {

Tensor seeded_noise(uint64_t seed, const std::vector<int64_t>& shape, int64_t draws, bool cuda) {
  // A CUDA generator through the hooks libtorch_cuda registers: no CUDA header is needed here.
  at::Generator generator = cuda ? at::detail::getCUDAHooks().getNewGenerator() : at::detail::createCPUGenerator();
  generator.set_current_seed(seed);  // torch.Generator.manual_seed
  const auto options = at::TensorOptions().dtype(at::kFloat).device(cuda ? at::kCUDA : at::kCPU);
  std::vector<int64_t> all = shape;
  all.insert(all.begin(), draws);
  Tensor out = Tensor::zeros(DType::kFloat32, all);
  const size_t bytes = out.bytes.size() / static_cast<size_t>(draws);
  for (int64_t k = 0; k < draws; ++k) {  // one call per draw: the generator's state advances as in Python
    const at::Tensor draw = at::randn(shape, generator, options).cpu();
    std::memcpy(out.bytes.data() + k * bytes, draw.data_ptr<float>(), bytes);
  }
  return out;
}

}  // namespace dcrt_host
