// Memory on the host's device: plain heap memory on the CPU, cudaMalloc'd memory on CUDA
// (device_cuda.cpp, built with DCRT_HOST_CUDA). The denoising loop is written once over these.
#pragma once

#include <cstddef>
#include <string>

namespace dcrt_host {

enum class Device { kCPU, kCUDA };

Device device_from_name(const std::string& name);  // "cpu" / "cuda"
bool cuda_built();                                 // this binary was built with CUDA

class Buffer {
 public:
  Buffer(Device device, size_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }

 private:
  Device device_;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Copies on `stream` (CUDA; ignored on the CPU). Copies with host memory at either end synchronise the
// stream before they return.
void copy_to_device(Device device, void* dst, const void* src, size_t bytes, void* stream);
void copy_on_device(Device device, void* dst, const void* src, size_t bytes, void* stream);
void copy_to_host(Device device, void* dst, const void* src, size_t bytes, void* stream);

}  // namespace dcrt_host
