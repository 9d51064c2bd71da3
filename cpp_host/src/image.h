// Image files and dcrt's image preprocessing (dcrt.images): PNG / JPEG decoding as PIL's convert("RGB"), and the
// resize of the shorter side (PIL's antialiased bilinear, as torchvision's Resize calls it) + centre crop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor.h"

namespace dcrt_host {

// An image file's bytes -> uint8 [H, W, 3]. PNG (libpng) or JPEG (libjpeg, PIL's decoder and its default settings);
// anything else, a 16-bit PNG or a CMYK JPEG is refused in one line naming `name`.
Tensor decode_image(const std::vector<uint8_t>& bytes, const std::string& name);
Tensor read_image_file(const std::string& path);

// PIL's Image.resize(..., BILINEAR) of uint8 [H, W, 3] (Resample.c: float coefficients rounded to 22-bit fixed
// point, horizontal pass first): bit for bit.
Tensor pil_resize_bilinear(const Tensor& rgb, int height, int width);

// dcrt.images.load_image's pixels: torchvision's Resize(min(height, width)) (the shorter side to that size) and
// CenterCrop((height, width)) (zero padding where the resized image is smaller), uint8 [height, width, 3].
Tensor resize_and_crop(const Tensor& rgb, int height, int width);

}  // namespace dcrt_host
