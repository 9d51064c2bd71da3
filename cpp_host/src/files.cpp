#include "files.h"

#include <nlohmann/json.hpp>
#include <png.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "errors.h"

namespace dcrt_host {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw HostError("cannot read " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_atomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out || !out.write(data.data(), static_cast<std::streamsize>(data.size())) || !out.flush()) {
      std::remove(tmp.c_str());
      throw HostError("cannot write " + path);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw HostError("cannot rename " + tmp + " to " + path);
  }
}

// --- .npy (version 1/2 headers, little-endian, C order) -----------------------------------------------------------

namespace {

DType npy_dtype(const std::string& descr, const std::string& path) {
  if (descr == "<f4") return DType::kFloat32;
  if (descr == "<i8") return DType::kInt64;
  if (descr == "|u1") return DType::kUInt8;
  throw HostError(path + ": unsupported .npy dtype " + descr + " (float32, int64 or uint8 expected)");
}

std::string npy_descr(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "<f4";
    case DType::kInt64: return "<i8";
    case DType::kUInt8: return "|u1";
  }
  return "";
}

// The header is a Python dict literal; pull out the three values dcrt writes.
std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
  const size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw HostError(path + ": .npy header has no " + key);
  size_t begin = header.find(':', at) + 1;
  while (header[begin] == ' ') ++begin;
  const char close = header[begin] == '(' ? ')' : (header[begin] == '\'' ? '\'' : ',');
  const size_t end = header.find(close, begin + 1);
  return header.substr(begin, end - begin + (close == ',' ? 0 : 1));
}

}  // namespace

Tensor read_npy(const std::string& path) {
  const std::string data = read_text(path);
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) throw HostError(path + " is not a .npy file");
  const int major = static_cast<unsigned char>(data[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(data[8]) | (static_cast<unsigned char>(data[9]) << 8);
    offset = 10;
  } else {
    std::memcpy(&header_len, data.data() + 8, 4);
    header_len &= 0xffffffffu;
    offset = 12;
  }
  const std::string header = data.substr(offset, header_len);
  Tensor t;
  std::string descr = header_value(header, "descr", path);
  t.dtype = npy_dtype(descr.substr(1, descr.size() - 2), path);
  if (header_value(header, "fortran_order", path).find("True") != std::string::npos)
    throw HostError(path + ": Fortran-order .npy is not supported (write it C-contiguous)");
  std::string dims = header_value(header, "shape", path);
  for (char& c : dims)
    if (c == '(' || c == ')' || c == ',') c = ' ';
  std::istringstream in(dims);
  for (int64_t d; in >> d;) t.shape.push_back(d);
  const size_t bytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype);
  if (data.size() - offset - header_len != bytes)
    throw HostError(path + ": .npy data is " + std::to_string(data.size() - offset - header_len) + " bytes, shape " +
                    shape_string(t.shape) + " needs " + std::to_string(bytes));
  t.bytes.assign(data.begin() + static_cast<long>(offset + header_len), data.end());
  return t;
}

void write_npy(const std::string& path, const Tensor& tensor) {
  std::string shape = "(";
  for (int64_t d : tensor.shape) shape += std::to_string(d) + ",";
  shape += ")";
  std::string header = "{'descr': '" + npy_descr(tensor.dtype) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ');  // data aligned to 64 bytes, as numpy does
  header += '\n';
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(tensor.bytes.data()), tensor.bytes.size());
  write_atomic(path, out);
}

// --- safetensors: u64 header size, JSON header {name: {dtype, shape, data_offsets}}, data ---------------------------

std::map<std::string, Tensor> read_safetensors(const std::string& path) {
  const std::string data = read_text(path);
  uint64_t header_len = 0;
  if (data.size() < 8) throw HostError(path + " is not a safetensors file");
  std::memcpy(&header_len, data.data(), 8);
  if (header_len > data.size() - 8) throw HostError(path + " is not a safetensors file (bad header size)");
  // A missing or mistyped field throws nlohmann::json::exception: the whole header is then reported as malformed.
  try {
    const nlohmann::json header = nlohmann::json::parse(data.substr(8, header_len));
    std::map<std::string, Tensor> out;
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") continue;
      const std::string dtype = entry.at("dtype").get<std::string>();
      Tensor t;
      if (dtype == "F32") t.dtype = DType::kFloat32;
      else if (dtype == "I64") t.dtype = DType::kInt64;
      else throw HostError(path + ": tensor " + name + " has dtype " + dtype + " (F32 or I64 expected)");
      t.shape = entry.at("shape").get<std::vector<int64_t>>();
      const auto offsets = entry.at("data_offsets").get<std::vector<size_t>>();
      if (offsets.size() != 2) throw HostError(path + ": tensor " + name + " has inconsistent offsets");
      const size_t begin = offsets[0] + 8 + header_len, end = offsets[1] + 8 + header_len;
      if (end > data.size() || end < begin || end - begin != static_cast<size_t>(t.numel()) * dtype_size(t.dtype))
        throw HostError(path + ": tensor " + name + " has inconsistent offsets");
      t.bytes.assign(data.begin() + static_cast<long>(begin), data.begin() + static_cast<long>(end));
      out.emplace(name, std::move(t));
    }
    return out;
  } catch (const nlohmann::json::exception& e) {
    throw HostError(path + " is not a safetensors file (" + e.what() + ")");
  }
}

// --- PNG frames (reading images: image.cpp) ------------------------------------------------------------------------

namespace {
// libpng prints its errors and warnings on stderr by default; the host reports one line of its own instead.
void png_fail(png_structp png, png_const_charp) { png_longjmp(png, 1); }
void png_quiet(png_structp, png_const_charp) {}
void append_bytes(png_structp png, png_bytep data, png_size_t length) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), length);
}
void flush_nothing(png_structp) {}
}  // namespace

void write_png_rgb(const std::string& path, const uint8_t* rgb, int height, int width) {
  std::string encoded;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, png_fail, png_quiet);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw HostError("cannot encode " + path);
  }
  png_set_write_fn(png, &encoded, append_bytes, flush_nothing);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) png_write_row(png, const_cast<png_bytep>(rgb + static_cast<size_t>(y) * width * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  write_atomic(path, encoded);  // encoded in memory: a failed encode leaves no file
}

}  // namespace dcrt_host
