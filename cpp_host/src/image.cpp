#include "image.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <optional>

#include "errors.h"
#include "files.h"
#include "orientation.h"

namespace dcrt_host {

namespace {

// --- PNG (libpng's simplified API has no "drop alpha, keep colour" mode, so the classic one) ---------------------

// One channel of a pixel of opacity `a` composited on opaque white: PIL's Image.alpha_composite (AlphaComposite.c,
// 7 bits of precision, its shift-based division by 255), which dcrt.images uses; a = 255 gives `v` back exactly.
uint8_t over_white(uint8_t v, uint8_t a) {
  if (a == 0) return 255;
  constexpr uint32_t kPrecisionBits = 7;
  const uint32_t outa255 = a * 255u + 255u * (255u - a);
  const uint32_t coef1 = a * 255u * 255u * (1u << kPrecisionBits) / outa255;
  const uint32_t coef2 = 255u * (1u << kPrecisionBits) - coef1;
  const uint32_t mixed = v * coef1 + 255u * coef2 + (0x80u << kPrecisionBits);
  return static_cast<uint8_t>((((mixed >> 8) + mixed) >> 8) >> kPrecisionBits);
}

struct PngSource {
  const std::vector<uint8_t>& bytes;
  size_t at = 0;
};

// libpng prints its errors and warnings on stderr by default; the host reports one line of its own instead.
void png_fail(png_structp png, png_const_charp) { png_longjmp(png, 1); }
void png_quiet(png_structp, png_const_charp) {}
void png_read_bytes(png_structp png, png_bytep out, png_size_t length) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (src->at + length > src->bytes.size()) png_error(png, "truncated");
  std::memcpy(out, src->bytes.data() + src->at, length);
  src->at += length;
}

// The chunks after the pixels, where an eXIf may also be (PIL reads it there too). A damaged tail is ignored, as PIL
// ignores it: the pixels are read by then. (Its own setjmp: longjmp must not leave a frame with live C++ objects.)
void read_png_end(png_structp png, png_infop info) {
  if (setjmp(png_jmpbuf(png))) return;
  png_read_end(png, info);
}

// The last eXIf chunk's bytes as they are (a TIFF block, or one behind "Exif\0\0"), none without one: what PIL reads.
// libpng's own eXIf reading (png_get_eXIf_1) keeps the first chunk and drops one that does not start with "II" or
// "MM", so decode_png has libpng keep eXIf chunks as unknown ones, which it stores untouched.
std::optional<std::vector<uint8_t>> png_exif(png_structp png, png_infop info) {
  png_unknown_chunkp chunks = nullptr;
  const int count = png_get_unknown_chunks(png, info, &chunks);
  std::optional<std::vector<uint8_t>> exif;
  for (int i = 0; i < count; ++i)
    if (std::memcmp(chunks[i].name, "eXIf", 4) == 0)
      exif.emplace(chunks[i].data, chunks[i].data + (chunks[i].data != nullptr ? chunks[i].size : 0));
  return exif;
}

// The last text chunk (iTXt, tEXt or zTXt, decompressed) with this key, as PIL's info holds it.
std::optional<std::string> png_text(png_structp png, png_infop info, const char* key) {
  png_textp text = nullptr;
  const int count = png_get_text(png, info, &text, nullptr);
  std::optional<std::string> value;
  for (int i = 0; i < count; ++i) {
    if (text[i].key == nullptr || text[i].text == nullptr || std::strcmp(text[i].key, key) != 0) continue;
    value.emplace(text[i].text, text[i].compression > 0 ? text[i].itxt_length : text[i].text_length);
  }
  return value;
}

// The PNG's orientation as PIL's getexif finds it: the eXIf chunk's EXIF, else ImageMagick's "Raw profile type exif"
// text (hex), then the XMP packet where the EXIF has no entry.
int png_orientation(png_structp png, png_infop info) {
  const std::string xmp = png_text(png, info, "XML:com.adobe.xmp").value_or("");
  if (const auto exif = png_exif(png, info)) return image_orientation(*exif, xmp);
  if (const auto raw = png_text(png, info, "Raw profile type exif")) {
    const auto exif = raw_profile_exif(*raw);
    return exif ? image_orientation(*exif, xmp) : 1;  // bad hex: PIL raises, and dcrt.images then ignores the block
  }
  return image_orientation({}, xmp);
}

Tensor decode_png(const std::vector<uint8_t>& bytes, const std::string& name) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, png_fail, png_quiet);
  png_infop info = png_create_info_struct(png);
  png_set_benign_errors(png, 1);  // a malformed ancillary chunk is a warning, not a failure, as in PIL
  static constexpr png_byte kExif[] = {'e', 'X', 'I', 'f', '\0'};
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_ALWAYS, kExif, 1);  // png_exif reads them
  PngSource source{bytes};
  // Everything libpng's longjmp may cross is made before setjmp (a jump skips no constructor, and the throw below
  // frees it all); a flag set between setjmp and longjmp is volatile, so the handler reads its value.
  Tensor t;
  std::vector<uint8_t> pixels;
  std::vector<png_bytep> rows;
  volatile bool sixteen = false;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw HostError(sixteen ? name + " is a 16-bit PNG; convert it to 8-bit RGB first"
                            : "cannot read " + name + ": not a valid PNG file");
  }
  png_set_read_fn(png, &source, png_read_bytes);
  png_read_info(png, info);
  if (png_get_bit_depth(png, info) == 16) {
    sixteen = true;
    png_longjmp(png, 1);
  }
  // dcrt.images.to_rgb: an alpha channel (RGBA, LA, a palette with transparency) is composited on white; a tRNS
  // colour key of an RGB or grey image is ignored, as PIL's convert("RGB") ignores it.
  const int colour = png_get_color_type(png, info);
  const bool keyed_palette = colour == PNG_COLOR_TYPE_PALETTE && png_get_valid(png, info, PNG_INFO_tRNS);
  const bool alpha = (colour & PNG_COLOR_MASK_ALPHA) || keyed_palette;
  png_set_palette_to_rgb(png);
  png_set_expand_gray_1_2_4_to_8(png);
  if (keyed_palette) png_set_tRNS_to_alpha(png);
  png_set_gray_to_rgb(png);  // L / LA -> RGB, as PIL's convert("RGB")
  png_read_update_info(png, info);
  const int height = static_cast<int>(png_get_image_height(png, info));
  const int width = static_cast<int>(png_get_image_width(png, info));
  const int channels = alpha ? 4 : 3;
  pixels.resize(static_cast<size_t>(height) * width * channels);
  rows.resize(static_cast<size_t>(height));
  for (int y = 0; y < height; ++y) rows[static_cast<size_t>(y)] = pixels.data() + static_cast<size_t>(y) * width * channels;
  png_read_image(png, rows.data());
  read_png_end(png, info);
  const int orientation = png_orientation(png, info);
  png_destroy_read_struct(&png, &info, nullptr);
  t = Tensor::zeros(DType::kUInt8, {height, width, 3});
  const size_t count = static_cast<size_t>(height) * width;
  for (size_t i = 0; i < count; ++i)
    for (int c = 0; c < 3; ++c)
      t.bytes[i * 3 + c] = alpha ? over_white(pixels[i * 4 + c], pixels[i * 4 + 3]) : pixels[i * 3 + c];
  return apply_orientation(t, orientation);
}

// --- JPEG ----------------------------------------------------------------------------------------------------------

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
};

void jpeg_fail(j_common_ptr info) { std::longjmp(reinterpret_cast<JpegError*>(info->err)->jump, 1); }
void jpeg_quiet(j_common_ptr, int) {}

// libjpeg's defaults are PIL's (islow DCT, fancy upsampling); grey is expanded to RGB as convert("RGB") does.
Tensor decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& name) {
  jpeg_decompress_struct info{};
  JpegError error{};
  info.err = jpeg_std_error(&error.mgr);
  error.mgr.error_exit = jpeg_fail;
  error.mgr.emit_message = jpeg_quiet;
  Tensor t;  // as in decode_png: what the longjmp may cross is made before setjmp, its flag volatile
  std::vector<uint8_t> exif, row;
  std::string xmp;
  volatile bool cmyk = false;
  if (setjmp(error.jump)) {
    jpeg_destroy_decompress(&info);
    throw HostError(cmyk ? name + " is a CMYK JPEG; convert it to RGB first" : "cannot read " + name + ": not a valid JPEG file");
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_save_markers(&info, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&info, TRUE);
  // PIL's EXIF: the first APP1 "Exif\0\0" segment, with the payload of every later one appended (JpegImagePlugin.APP).
  // Its XMP: the last APP1 segment of Adobe's namespace, after the namespace's NUL.
  constexpr char kXmp[] = "http://ns.adobe.com/xap/1.0/";  // sizeof: with its NUL
  for (jpeg_saved_marker_ptr m = info.marker_list; m != nullptr; m = m->next) {
    if (m->marker != JPEG_APP0 + 1) continue;
    if (m->data_length >= 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0)
      exif.insert(exif.end(), m->data + (exif.empty() ? 0 : 6), m->data + m->data_length);
    else if (m->data_length >= sizeof(kXmp) && std::memcmp(m->data, kXmp, sizeof(kXmp)) == 0)
      xmp.assign(reinterpret_cast<const char*>(m->data) + sizeof(kXmp), m->data_length - sizeof(kXmp));
  }
  if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
    cmyk = true;
    std::longjmp(error.jump, 1);
  }
  const bool grey = info.jpeg_color_space == JCS_GRAYSCALE;
  info.out_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&info);
  const int height = static_cast<int>(info.output_height), width = static_cast<int>(info.output_width);
  t = Tensor::zeros(DType::kUInt8, {height, width, 3});
  row.resize(static_cast<size_t>(width) * (grey ? 1 : 3));
  while (info.output_scanline < info.output_height) {
    const int y = static_cast<int>(info.output_scanline);
    JSAMPROW rows[1] = {row.data()};
    jpeg_read_scanlines(&info, rows, 1);
    uint8_t* dst = t.bytes.data() + static_cast<size_t>(y) * width * 3;
    if (grey)
      for (int x = 0; x < width; ++x) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[static_cast<size_t>(x)];
    else
      std::memcpy(dst, row.data(), row.size());
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return apply_orientation(t, image_orientation(exif, xmp));
}

// --- PIL's resample (Pillow src/libImaging/Resample.c, bilinear filter, 8 bits per channel) -----------------------

constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;       // [out][2]: first input index, count
  std::vector<int32_t> weights;  // [out][ksize], fixed point
};

// precompute_coeffs + normalize_coeffs_8bpc for a box [0, in_size) -> out_size.
Coefficients coefficients(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;  // the bilinear (triangle) filter's support is 1
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(static_cast<size_t>(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double u = std::fabs((x + xmin - center + 0.5) * ss);
      k[static_cast<size_t>(x)] = u < 1.0 ? 1.0 - u : 0.0;
      ww += k[static_cast<size_t>(x)];
    }
    for (int x = 0; x < xmax; ++x) {
      const double w = ww != 0.0 ? k[static_cast<size_t>(x)] / ww : k[static_cast<size_t>(x)];
      c.weights[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

uint8_t clip8(int32_t v) { return static_cast<uint8_t>(std::clamp(v >> kPrecisionBits, 0, 255)); }

// One pass along an axis: `out_len` outputs from `in` [rows][in_len] along the axis with unit stride `step`.
Tensor resample_horizontal(const Tensor& in, int row_first, int rows, const Coefficients& c, int out_width) {
  const int64_t in_width = in.shape[1];
  Tensor out = Tensor::zeros(DType::kUInt8, {rows, out_width, 3});
  for (int y = 0; y < rows; ++y) {
    const uint8_t* src = in.bytes.data() + (static_cast<int64_t>(y) + row_first) * in_width * 3;
    for (int xx = 0; xx < out_width; ++xx) {
      const int xmin = c.bounds[2 * xx], xmax = c.bounds[2 * xx + 1];
      const int32_t* k = c.weights.data() + static_cast<size_t>(xx) * c.ksize;
      for (int ch = 0; ch < 3; ++ch) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < xmax; ++x) ss += src[(x + xmin) * 3 + ch] * k[x];
        out.bytes[(static_cast<size_t>(y) * out_width + xx) * 3 + ch] = clip8(ss);
      }
    }
  }
  return out;
}

Tensor resample_vertical(const Tensor& in, const Coefficients& c, int row_offset, int out_height) {
  const int64_t width = in.shape[1];
  Tensor out = Tensor::zeros(DType::kUInt8, {out_height, width, 3});
  for (int yy = 0; yy < out_height; ++yy) {
    const int ymin = c.bounds[2 * yy] - row_offset, ymax = c.bounds[2 * yy + 1];
    const int32_t* k = c.weights.data() + static_cast<size_t>(yy) * c.ksize;
    for (int64_t x = 0; x < width * 3; ++x) {
      int32_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < ymax; ++y) ss += in.bytes[(static_cast<size_t>(y + ymin) * width) * 3 + x] * k[y];
      out.bytes[static_cast<size_t>(yy) * width * 3 + x] = clip8(ss);
    }
  }
  return out;
}

bool starts_with(const std::vector<uint8_t>& bytes, const char* magic, size_t n) {
  return bytes.size() >= n && std::memcmp(bytes.data(), magic, n) == 0;
}

}  // namespace

Tensor decode_image(const std::vector<uint8_t>& bytes, const std::string& name) {
  if (starts_with(bytes, "\x89PNG\r\n\x1a\n", 8)) return decode_png(bytes, name);
  if (starts_with(bytes, "\xff\xd8\xff", 3)) return decode_jpeg(bytes, name);
  throw HostError(name + " is not a PNG or JPEG image; convert it to one of those");
}

Tensor read_image_file(const std::string& path) {
  std::string text;
  try {
    text = read_text(path);
  } catch (const HostError&) {
    throw HostError("image " + path + " does not exist or cannot be read");
  }
  return decode_image(std::vector<uint8_t>(text.begin(), text.end()), path);
}

Tensor pil_resize_bilinear(const Tensor& rgb, int height, int width) {
  const int in_h = static_cast<int>(rgb.shape[0]), in_w = static_cast<int>(rgb.shape[1]);
  if (in_h == height && in_w == width) return rgb;  // Image.resize returns a copy
  const Coefficients horizontal = coefficients(in_w, width), vertical = coefficients(in_h, height);
  // The rows the vertical pass reads: the horizontal pass computes only those (ImagingResampleInner).
  const int first = vertical.bounds[0];
  const int last = vertical.bounds[2 * height - 2] + vertical.bounds[2 * height - 1];
  Tensor image = rgb;
  int offset = 0;
  if (in_w != width) {
    image = resample_horizontal(rgb, first, last - first, horizontal, width);
    offset = first;
  }
  return in_h != height ? resample_vertical(image, vertical, offset, height) : image;
}

Tensor resize_and_crop(const Tensor& rgb, int height, int width) {
  const int64_t h = rgb.shape[0], w = rgb.shape[1];
  // torchvision's _compute_resized_output_size: the shorter side to `size`, the longer int(size * long / short).
  const int size = std::min(height, width);
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  const int64_t other = static_cast<int64_t>(static_cast<double>(size) * static_cast<double>(longer) / shorter);
  const int new_h = static_cast<int>(w <= h ? other : size), new_w = static_cast<int>(w <= h ? size : other);
  const Tensor resized = pil_resize_bilinear(rgb, new_h, new_w);
  // CenterCrop: pads with zeros (left/top get the smaller half) where too small, then crops at
  // round((size - crop) / 2) with Python's round (half to even, as std::nearbyint in the default rounding mode).
  const int pad_left = width > new_w ? (width - new_w) / 2 : 0, pad_top = height > new_h ? (height - new_h) / 2 : 0;
  const int padded_w = std::max(new_w, width), padded_h = std::max(new_h, height);
  const int top = static_cast<int>(std::nearbyint((padded_h - height) / 2.0));
  const int left = static_cast<int>(std::nearbyint((padded_w - width) / 2.0));
  Tensor out = Tensor::zeros(DType::kUInt8, {height, width, 3});
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const int sy = y + top - pad_top, sx = x + left - pad_left;  // in the resized image
      if (sy < 0 || sy >= new_h || sx < 0 || sx >= new_w) continue;
      std::memcpy(&out.bytes[(static_cast<size_t>(y) * width + x) * 3],
                  &resized.bytes[(static_cast<size_t>(sy) * new_w + sx) * 3], 3);
    }
  return out;
}

}  // namespace dcrt_host
