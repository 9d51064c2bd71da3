// The host's file formats: .npy (test data), safetensors (the schedule), PNG frames (images are
// read by image.h). Outputs are written to a temporary name and renamed, so a failed run leaves no half file.
#pragma once

#include <map>
#include <string>

#include "tensor.h"

namespace dcrt_host {

std::string read_text(const std::string& path);
// Writes `data` to path + ".tmp" then renames it over `path`.
void write_atomic(const std::string& path, const std::string& data);

Tensor read_npy(const std::string& path);                   // little-endian <f4 / <i8 / |u1, C order
void write_npy(const std::string& path, const Tensor& tensor);
std::map<std::string, Tensor> read_safetensors(const std::string& path);  // F32 and I64 tensors

void write_png_rgb(const std::string& path, const uint8_t* rgb, int height, int width);

}  // namespace dcrt_host
