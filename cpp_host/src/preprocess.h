// Image conversions at the graphs' edges, as the Python pipeline does them (docs/export.md, "Image
// preprocessing stays outside the graph"; docs/sampling.md §4.1, 4.9).
#pragma once

#include <cstdint>
#include <vector>

#include "tensor.h"

namespace dcrt_host {

// uint8 [H, W, 3] -> float32 [1, 3, H, W] in [-1, 1]: v / 255 * 2 - 1 (dcrt.images.load_image after its resize).
Tensor image_to_pixels(const Tensor& rgb);

// float32 [1, 3, H, W] in [-1, 1] -> the image encoder's input [1, 3, size, size]: kornia's antialiased
// bicubic resize (dcrt.models.clip.antialiased_resize), then CLIP's normalisation (clip_normalize).
Tensor clip_pixels(const Tensor& image, int size);

// float32 [count, 3, H, W] decoder output -> uint8 [count, H, W, 3]: clamp to [-1, 1], (v + 1) / 2 * 255,
// truncated (dcrt.images.to_uint8_frames).
std::vector<uint8_t> frames_to_u8(const float* video, int count, int height, int width);

}  // namespace dcrt_host
