#include "preprocess.h"

#include <algorithm>
#include <cmath>

namespace dcrt_host {

namespace {

// CLIP's normalisation constants (docs/export.md; dcrt.config.ImageEncoderConfig).
constexpr float kMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

// A normalised Gaussian of odd `size` in float32, as dcrt.models.clip._gaussian_kernel.
std::vector<float> gaussian_kernel(int size, double sigma) {
  const float denom = static_cast<float>(2.0 * sigma * sigma);
  std::vector<float> k(static_cast<size_t>(size));
  float sum = 0.0f;
  for (int i = 0; i < size; ++i) {
    const float x = static_cast<float>(i - size / 2);
    k[static_cast<size_t>(i)] = std::exp(-(x * x) / denom);
    sum += k[static_cast<size_t>(i)];
  }
  for (float& v : k) v /= sum;
  return k;
}

int reflect(int i, int n) {  // F.pad(mode="reflect"): the edge sample is not repeated
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

// Depthwise 1-D blur of planes [planes, h, w] along rows (vertical) or columns, reflect padding.
std::vector<float> blur(const std::vector<float>& src, int planes, int h, int w, const std::vector<float>& k,
                        bool vertical) {
  std::vector<float> dst(src.size());
  const int pad = static_cast<int>(k.size()) / 2;
  for (int p = 0; p < planes; ++p)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        float acc = 0.0f;
        for (int j = 0; j < static_cast<int>(k.size()); ++j) {
          const int yy = vertical ? reflect(y + j - pad, h) : y, xx = vertical ? x : reflect(x + j - pad, w);
          acc += k[static_cast<size_t>(j)] * src[(static_cast<size_t>(p) * h + yy) * w + xx];
        }
        dst[(static_cast<size_t>(p) * h + y) * w + x] = acc;
      }
  return dst;
}

// Keys' cubic convolution weights with A = -0.75 (PyTorch's bicubic) for fractional offset t.
void cubic_weights(float t, float w[4]) {
  const float a = -0.75f;
  auto near = [a](float x) { return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f; };
  auto far = [a](float x) { return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a; };
  w[0] = far(t + 1.0f);
  w[1] = near(t);
  w[2] = near(1.0f - t);
  w[3] = far(2.0f - t);
}

// Source index and weights of output position o along an axis (align_corners=True, clamped borders).
struct Taps {
  int index[4];
  float weight[4];
};

std::vector<Taps> taps(int in, int out) {
  const float scale = out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
  std::vector<Taps> all(static_cast<size_t>(out));
  for (int o = 0; o < out; ++o) {
    const float real = scale * static_cast<float>(o);
    const int base = static_cast<int>(std::floor(real));
    cubic_weights(real - static_cast<float>(base), all[static_cast<size_t>(o)].weight);
    for (int j = 0; j < 4; ++j) all[static_cast<size_t>(o)].index[j] = std::clamp(base - 1 + j, 0, in - 1);
  }
  return all;
}

std::vector<float> bicubic(const std::vector<float>& src, int planes, int h, int w, int size) {
  const std::vector<Taps> ty = taps(h, size), tx = taps(w, size);
  std::vector<float> dst(static_cast<size_t>(planes) * size * size);
  for (int p = 0; p < planes; ++p)
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        float acc = 0.0f;
        for (int i = 0; i < 4; ++i) {
          const float* row = &src[(static_cast<size_t>(p) * h + ty[static_cast<size_t>(y)].index[i]) * w];
          float r = 0.0f;
          const Taps& h_taps = tx[static_cast<size_t>(x)];
          for (int j = 0; j < 4; ++j) r += h_taps.weight[j] * row[h_taps.index[j]];
          acc += ty[static_cast<size_t>(y)].weight[i] * r;
        }
        dst[(static_cast<size_t>(p) * size + y) * size + x] = acc;
      }
  return dst;
}

}  // namespace

Tensor image_to_pixels(const Tensor& rgb) {
  const int64_t h = rgb.shape[0], w = rgb.shape[1];
  Tensor t = Tensor::zeros(DType::kFloat32, {1, 3, h, w});
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t p = 0; p < h * w; ++p)
      t.f32()[c * h * w + p] = static_cast<float>(rgb.bytes[static_cast<size_t>(p * 3 + c)]) / 255.0f * 2.0f - 1.0f;
  return t;
}

Tensor clip_pixels(const Tensor& image, int size) {
  const int h = static_cast<int>(image.shape[2]), w = static_cast<int>(image.shape[3]);
  std::vector<float> x(image.f32(), image.f32() + image.numel());
  const double fy = static_cast<double>(h) / size, fx = static_cast<double>(w) / size;
  if (std::max(fy, fx) > 1.0) {  // shrinking: blur both axes first (sigma from each axis's own factor)
    const double factors[2] = {fy, fx};
    const int extents[2] = {h, w};
    for (int axis = 0; axis < 2; ++axis) {
      const double sigma = std::max((factors[axis] - 1.0) / 2.0, 0.001);
      int k = static_cast<int>(std::max(4.0 * sigma, 3.0));
      k = k % 2 ? k : k + 1;
      if (extents[axis] > 1) x = blur(x, 3, h, w, gaussian_kernel(k, sigma), axis == 0);
    }
  }
  std::vector<float> resized = bicubic(x, 3, h, w, size);
  Tensor out = Tensor::zeros(DType::kFloat32, {1, 3, size, size});
  const size_t plane = static_cast<size_t>(size) * size;
  for (size_t c = 0; c < 3; ++c)
    for (size_t p = 0; p < plane; ++p)
      out.f32()[c * plane + p] = ((resized[c * plane + p] + 1.0f) / 2.0f - kMean[c]) / kStd[c];
  return out;
}

std::vector<uint8_t> frames_to_u8(const float* video, int count, int height, int width) {
  const size_t hw = static_cast<size_t>(height) * width;
  std::vector<uint8_t> frames(static_cast<size_t>(count) * hw * 3);
  for (size_t t = 0; t < static_cast<size_t>(count); ++t)
    for (size_t c = 0; c < 3; ++c)
      for (size_t p = 0; p < hw; ++p) {
        const float v = std::clamp(video[(t * 3 + c) * hw + p], -1.0f, 1.0f);
        frames[(t * hw + p) * 3 + c] = static_cast<uint8_t>((v + 1.0f) / 2.0f * 255.0f);  // truncates, as torch
      }
  return frames;
}

}  // namespace dcrt_host
