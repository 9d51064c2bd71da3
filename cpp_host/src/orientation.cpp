#include "orientation.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <string>

namespace dcrt_host {

namespace {

constexpr uint16_t kOrientationTag = 0x0112;

// Bounds-checked reads of a TIFF block in its byte order.
struct Tiff {
  const std::vector<uint8_t>& data;
  size_t base;  // where the TIFF header starts (after the "Exif\0\0" prefixes)
  bool big_endian;

  bool has(uint64_t offset, uint64_t size) const {
    const uint64_t length = data.size() - base;
    return offset <= length && size <= length - offset;
  }
  uint64_t uint(uint64_t offset, int size) const {  // caller checked has(offset, size)
    uint64_t v = 0;
    for (int i = 0; i < size; ++i) {
      const uint64_t byte = data[base + offset + static_cast<uint64_t>(big_endian ? i : size - 1 - i)];
      v = (v << 8) | byte;
    }
    return v;
  }
};

// Bytes per value of the TIFF types PIL loads (TiffImagePlugin's _load_dispatch); 0: a type PIL skips.
int unit_size(uint16_t type) {
  switch (type) {
    case 1: case 2: case 6: case 7: return 1;  // BYTE, ASCII, SBYTE, UNDEFINED
    case 3: case 8: return 2;                  // SHORT, SSHORT
    case 4: case 9: case 11: case 13: return 4;  // LONG, SLONG, FLOAT, IFD
    case 5: case 10: case 12: case 16: case 17: case 18: return 8;  // (S)RATIONAL, DOUBLE, (S)LONG8, IFD8
    default: return 0;
  }
}

// The first value of an entry as the number PIL's dict lookup in exif_transpose would match: integers, and
// rationals and floats that equal one; BYTE, ASCII and UNDEFINED load as bytes or text, which match no orientation.
std::optional<int64_t> first_value(const Tiff& t, uint16_t type, uint64_t at) {
  auto whole = [](double v) -> std::optional<int64_t> {
    if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 1e9) return std::nullopt;
    return static_cast<int64_t>(v);
  };
  switch (type) {
    case 3: case 4: case 13: case 16: case 18: return static_cast<int64_t>(t.uint(at, unit_size(type)));
    case 6: return static_cast<int8_t>(t.uint(at, 1));
    case 8: return static_cast<int16_t>(t.uint(at, 2));
    case 9: return static_cast<int32_t>(t.uint(at, 4));
    case 17: return static_cast<int64_t>(t.uint(at, 8));
    case 5: case 10: {  // a zero denominator is NaN in PIL's IFDRational
      const uint64_t n = t.uint(at, 4), d = t.uint(at + 4, 4);
      const double num = type == 5 ? static_cast<double>(n) : static_cast<int32_t>(n);
      const double den = type == 5 ? static_cast<double>(d) : static_cast<int32_t>(d);
      return den != 0 ? whole(num / den) : std::nullopt;
    }
    case 11: {
      const uint32_t bits = static_cast<uint32_t>(t.uint(at, 4));
      float f;
      std::memcpy(&f, &bits, 4);
      return whole(f);
    }
    case 12: {
      const uint64_t bits = t.uint(at, 8);
      double f;
      std::memcpy(&f, &bits, 8);
      return whole(f);
    }
    default: return std::nullopt;
  }
}

}  // namespace

std::optional<int> exif_orientation(const std::vector<uint8_t>& exif) {
  size_t base = 0;
  while (exif.size() - base >= 6 && std::memcmp(exif.data() + base, "Exif\0\0", 6) == 0) base += 6;
  // ImageFileDirectory_v2's header check: "II" or "MM", then 42 in either byte order (BigTIFF's 43 is not read:
  // no camera writes it into an image's EXIF).
  if (exif.size() - base < 8) return std::nullopt;
  const uint8_t* h = exif.data() + base;
  const bool ii = h[0] == 'I' && h[1] == 'I', mm = h[0] == 'M' && h[1] == 'M';
  const bool magic = (h[2] == 42 && h[3] == 0) || (h[2] == 0 && h[3] == 42);
  if (!(ii || mm) || !magic) return std::nullopt;
  const Tiff t{exif, base, mm};
  const uint64_t ifd = t.uint(4, 4);
  if (!t.has(ifd, 2)) return std::nullopt;
  const uint64_t count = t.uint(ifd, 2);
  std::optional<int> orientation;
  // PIL reads entry after entry and stops at the first one cut off, keeping those before; a later entry of a tag
  // replaces an earlier one; an entry of an unknown type, of no values, or whose values lie outside the block is
  // skipped.
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t entry = ifd + 2 + 12 * i;
    if (!t.has(entry, 12)) break;
    if (t.uint(entry, 2) != kOrientationTag) continue;
    const auto type = static_cast<uint16_t>(t.uint(entry + 2, 2));
    const uint64_t values = t.uint(entry + 4, 4), unit = unit_size(type);
    if (unit == 0 || values == 0) continue;
    const uint64_t size = values * unit;  // < 2**35: no overflow
    const uint64_t at = size > 4 ? t.uint(entry + 8, 4) : entry + 8;
    if (!t.has(at, size)) continue;
    const std::optional<int64_t> value = first_value(t, type, at);
    orientation = value.has_value() && *value >= 1 && *value <= 8 ? static_cast<int>(*value) : 0;
  }
  return orientation;
}

std::optional<int> xmp_orientation(const std::string& xmp) {
  // The leftmost match of getexif's r'tiff:Orientation(="|>)([0-9])'.
  const std::string name = "tiff:Orientation";
  for (size_t at = xmp.find(name); at != std::string::npos; at = xmp.find(name, at + 1)) {
    const size_t next = at + name.size();  // <= xmp.size()
    size_t digit = 0;
    if (xmp.compare(next, 1, ">") == 0) digit = next + 1;
    if (xmp.compare(next, 2, "=\"") == 0) digit = next + 2;
    if (digit != 0 && digit < xmp.size() && xmp[digit] >= '0' && xmp[digit] <= '9') return xmp[digit] - '0';
  }
  return std::nullopt;
}

std::optional<std::vector<uint8_t>> raw_profile_exif(const std::string& text) {
  std::string hex;  // "".join(text.split("\n")[3:])
  size_t newlines = 0;
  for (const char c : text) {
    if (c == '\n') ++newlines;
    else if (newlines >= 3) hex += c;
  }
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i < hex.size();) {
    if (space(hex[i])) {
      ++i;
      continue;
    }
    if (i + 1 >= hex.size() || digit(hex[i]) < 0 || digit(hex[i + 1]) < 0) return std::nullopt;
    bytes.push_back(static_cast<uint8_t>(digit(hex[i]) * 16 + digit(hex[i + 1])));
    i += 2;
  }
  return bytes;
}

int image_orientation(const std::vector<uint8_t>& exif, const std::string& xmp) {
  if (const std::optional<int> entry = exif_orientation(exif)) return *entry;
  return xmp_orientation(xmp).value_or(1);
}

Tensor apply_orientation(const Tensor& rgb, int orientation) {
  if (orientation < 2 || orientation > 8) return rgb;
  const int64_t h = rgb.shape[0], w = rgb.shape[1];
  const bool swapped = orientation >= 5;  // transpose, rotations by 90 and 270, transverse
  const int64_t out_h = swapped ? w : h, out_w = swapped ? h : w;
  Tensor out = Tensor::zeros(DType::kUInt8, {out_h, out_w, 3});
  for (int64_t y = 0; y < out_h; ++y)
    for (int64_t x = 0; x < out_w; ++x) {
      int64_t sy = y, sx = x;  // the source pixel of output (y, x), as PIL's Image.transpose maps it
      switch (orientation) {
        case 2: sx = w - 1 - x; break;                  // FLIP_LEFT_RIGHT
        case 3: sy = h - 1 - y; sx = w - 1 - x; break;  // ROTATE_180
        case 4: sy = h - 1 - y; break;                  // FLIP_TOP_BOTTOM
        case 5: sy = x; sx = y; break;                  // TRANSPOSE
        case 6: sy = h - 1 - x; sx = y; break;          // ROTATE_270 (90 clockwise)
        case 7: sy = h - 1 - x; sx = w - 1 - y; break;  // TRANSVERSE
        case 8: sy = x; sx = w - 1 - y; break;          // ROTATE_90 (anticlockwise)
      }
      std::memcpy(&out.bytes[static_cast<size_t>((y * out_w + x) * 3)],
                  &rgb.bytes[static_cast<size_t>((sy * w + sx) * 3)], 3);
    }
  return out;
}

}  // namespace dcrt_host
