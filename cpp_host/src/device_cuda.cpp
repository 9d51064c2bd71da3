// CUDA memory and streams for device.cpp (built with DCRT_HOST_CUDA only).
#include <cuda_runtime_api.h>

#include <string>

#include "errors.h"

namespace dcrt_host {

namespace {
void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw HostError(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
}
}  // namespace

void* cuda_alloc(size_t bytes) {
  void* ptr = nullptr;
  check(cudaMalloc(&ptr, bytes), "cudaMalloc");
  return ptr;
}

void cuda_free(void* ptr) { cudaFree(ptr); }

void cuda_copy(void* dst, const void* src, size_t bytes, int kind, void* stream) {
  const cudaMemcpyKind kinds[3] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToDevice, cudaMemcpyDeviceToHost};
  auto s = static_cast<cudaStream_t>(stream);
  check(cudaMemcpyAsync(dst, src, bytes, kinds[kind], s), "cudaMemcpyAsync");
  // Host memory given to an async copy must stay valid until the copy ran: synchronise for both host ends.
  if (kind != 1) check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

}  // namespace dcrt_host
