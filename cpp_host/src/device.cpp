#include "device.h"

#include <cstdlib>
#include <cstring>

#include "errors.h"

namespace dcrt_host {

// device_cuda.cpp defines these when CUDA is built; the CPU-only build refuses CUDA with the fix.
#ifdef DCRT_HOST_CUDA
void* cuda_alloc(size_t bytes);
void cuda_free(void* ptr);
void cuda_copy(void* dst, const void* src, size_t bytes, int kind, void* stream);
#else
namespace {
[[noreturn]] void no_cuda() {
  throw HostError("this dcrt_host was built without CUDA: rebuild with -DDCRT_HOST_CUDA=ON, or use --device cpu");
}
void* cuda_alloc(size_t) { no_cuda(); }
void cuda_free(void*) {}
void cuda_copy(void*, const void*, size_t, int, void*) { no_cuda(); }
}  // namespace
#endif

bool cuda_built() {
#ifdef DCRT_HOST_CUDA
  return true;
#else
  return false;
#endif
}

Device device_from_name(const std::string& name) {
  if (name == "cpu") return Device::kCPU;
  if (name == "cuda") return Device::kCUDA;
  throw HostError("unknown device \"" + name + "\"; choose cpu or cuda");
}

Buffer::Buffer(Device device, size_t bytes) : device_(device), bytes_(bytes) {
  if (bytes == 0) return;
  data_ = device == Device::kCPU ? std::malloc(bytes) : cuda_alloc(bytes);
  if (data_ == nullptr) throw HostError("out of memory allocating " + std::to_string(bytes) + " bytes");
}

Buffer::~Buffer() {
  if (device_ == Device::kCPU) std::free(data_);
  else cuda_free(data_);
}

// kind: 0 host->device, 1 device->device, 2 device->host (mapped to cudaMemcpyKind in device_cuda.cpp)
void copy_to_device(Device device, void* dst, const void* src, size_t bytes, void* stream) {
  if (device == Device::kCPU) std::memcpy(dst, src, bytes);
  else cuda_copy(dst, src, bytes, 0, stream);
}

void copy_on_device(Device device, void* dst, const void* src, size_t bytes, void* stream) {
  if (device == Device::kCPU) std::memcpy(dst, src, bytes);
  else cuda_copy(dst, src, bytes, 1, stream);
}

void copy_to_host(Device device, void* dst, const void* src, size_t bytes, void* stream) {
  if (device == Device::kCPU) std::memcpy(dst, src, bytes);
  else cuda_copy(dst, src, bytes, 2, stream);
}

}  // namespace dcrt_host
