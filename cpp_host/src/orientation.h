// EXIF orientation as dcrt.images applies it (PIL's ImageOps.exif_transpose): the Orientation tag (0x0112) of an
// image's EXIF block (a JPEG's APP1 "Exif\0\0" segments, a PNG's eXIf chunk) or, without one, of its XMP packet,
// read as PIL reads them, and the transposition PIL makes for each value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tensor.h"

namespace dcrt_host {

// The Orientation entry of an EXIF block (a TIFF header and its first IFD; leading "Exif\0\0" prefixes are skipped,
// as PIL skips them), read as PIL's getexif reads it: none where PIL holds no entry, else its first value where that
// is an orientation (1-8) and 0 where it is not. A malformed or truncated block counts for what PIL reads of it (a tag
// cut off, an offset outside the block: no entry), never a read outside it.
std::optional<int> exif_orientation(const std::vector<uint8_t>& exif);

// The first `tiff:Orientation="N"` or `<tiff:Orientation>N` of an XMP packet (the regular expression getexif uses
// where EXIF has no entry).
std::optional<int> xmp_orientation(const std::string& xmp);

// The EXIF block of ImageMagick's "Raw profile type exif" PNG text as PIL decodes it: the lines after the third,
// joined, read as hex (bytes.fromhex: ASCII whitespace between byte pairs); none where fromhex raises.
std::optional<std::vector<uint8_t>> raw_profile_exif(const std::string& text);

// The orientation exif_transpose applies: EXIF's entry, else XMP's, else 1.
int image_orientation(const std::vector<uint8_t>& exif, const std::string& xmp);

// uint8 [H, W, 3] transposed as exif_transpose does for `orientation` (2: mirror, 3: rotate 180, 4: flip, 5:
// transpose, 6: rotate 270, 7: transverse, 8: rotate 90; PIL's rotations are anticlockwise); any other value leaves
// the image as it is.
Tensor apply_orientation(const Tensor& rgb, int orientation);

}  // namespace dcrt_host
