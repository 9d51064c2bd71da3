// EXIF orientation as dcrt.images applies it (PIL's ImageOps.exif_transpose): the Orientation tag (0x0112) of an
// image's EXIF block (a JPEG's APP1 "Exif\0\0" segments, a PNG's eXIf chunk), read as PIL reads it, and the
// transposition PIL makes for each value.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor.h"

namespace dcrt_host {

// The Orientation of an EXIF block (a TIFF header and its first IFD; leading "Exif\0\0" prefixes are skipped, as
// PIL skips them): the tag's first value where PIL's getexif would find one, else 1. A malformed or truncated block
// counts for what PIL reads of it (a tag cut off, an offset outside the block: no value), never a read outside it.
int exif_orientation(const std::vector<uint8_t>& exif);

// uint8 [H, W, 3] transposed as exif_transpose does for `orientation` (2: mirror, 3: rotate 180, 4: flip, 5:
// transpose, 6: rotate 270, 7: transverse, 8: rotate 90; PIL's rotations are anticlockwise); any other value leaves
// the image as it is.
Tensor apply_orientation(const Tensor& rgb, int orientation);

}  // namespace dcrt_host
