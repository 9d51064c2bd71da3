// Host-side tensors: a shape, a dtype (float32 or int64, the only two the bundle's graphs use, or
// uint8 for frames) and contiguous row-major bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dcrt_host {

enum class DType { kFloat32, kInt64, kUInt8 };

size_t dtype_size(DType dtype);
DType dtype_from_name(const std::string& name);  // "float32" / "int64" (manifest spelling)
std::string dtype_name(DType dtype);
int64_t element_count(const std::vector<int64_t>& shape);
std::string shape_string(const std::vector<int64_t>& shape);  // "[2, 4, 16, 8, 8]" for messages

struct Tensor {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  static Tensor zeros(DType dtype, std::vector<int64_t> shape);
  int64_t numel() const { return element_count(shape); }
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
  int64_t* i64() { return reinterpret_cast<int64_t*>(bytes.data()); }
  const int64_t* i64() const { return reinterpret_cast<const int64_t*>(bytes.data()); }
};

}  // namespace dcrt_host
