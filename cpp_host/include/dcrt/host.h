// dcrt/host.h: image-to-video on a dcrt bundle from C++, with no Python at any step (cpp_host/README.md).
//
//   #include <dcrt/host.h>
//   auto engine = dcrt::Engine::open("engines/aoti-cpu-avx2-torch2.14.1-cu130/tiny");  // once: loads every graph
//   dcrt::Video video = engine->animate(dcrt::read_image("boat.jpg"), "a boat", 123);  // any image size
//   dcrt::write_mp4(video, "boat.mp4");                                                  // ffmpeg on PATH
//
// The frames equal `dcrt animate --prompt ... --seed ...` on the same bundle within 1/255: the prompt is tokenized by
// the bundle's CLIP vocabulary, the noise drawn from the seed by libtorch's CPU generator (torch's own), the image
// resized and centre-cropped as dcrt (PIL's antialiased bilinear) does.
//
// Thread safety: an Engine runs one call at a time; concurrent calls on one engine wait for each other (a mutex).
// Separate engines (each holding its own copy of the graphs) run concurrently. The free functions are reentrant.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace dcrt {

// Bad input: a missing or malformed bundle, image or option. what() is one line that says the fix. Any other
// failure (an engine that fails while running) is a std::runtime_error.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
};

// 8-bit RGB pixels, row-major [height][width][3], any size.
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// A PNG or JPEG file as dcrt.images.open_image reads it (grey, palette and alpha converted as PIL's convert("RGB");
// EXIF orientation is not applied).
Image read_image(const std::string& path);
// An image file's bytes (a server's request body), as read_image.
Image decode_image(const std::vector<uint8_t>& bytes, const std::string& name = "image");

// Sampling settings; each one left unset takes the bundle's default (the preset's, as `dcrt animate` has them).
struct Sampling {
  std::optional<int> steps;
  std::optional<double> eta, guidance_scale, image_guidance_scale, guidance_rescale;
  std::optional<int64_t> frame_stride;
  std::optional<std::string> timestep_spacing;  // "uniform", "uniform_trailing", ...
};

struct Video {
  int frames = 0, height = 0, width = 0;
  int fps = 0;               // the rate `dcrt animate` writes it at (the bundle's), 0 when the bundle records none
  std::vector<uint8_t> rgb;  // [frames][height][width][3]
};

class Engine {
 public:
  // Reads the bundle's manifest and loads its graphs on `device` ("cpu", "cuda"; empty: the bundle's). Throws
  // UsageError (one line) for a bundle it cannot run: another torch, another device, a Stable Video Diffusion or
  // ToonCrafter bundle, one without a tokenizer vocabulary. A mode the bundle's preset lacks is refused by the call.
  static std::unique_ptr<Engine> open(const std::string& bundle_dir, const std::string& device = "");
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Image-to-video (`dcrt animate`): the image at any size, the prompt, the seed of torch.Generator().manual_seed.
  Video animate(const Image& image, const std::string& prompt, uint64_t seed, const Sampling& sampling = {});

  // Interpolation between two key frames (`dcrt interpolate`), and a video that returns to its first frame
  // (`dcrt loop`: one frame fewer, the repeat of the first left out). Settings default to the bundle's for the mode.
  Video interpolate(const Image& first, const Image& last, const std::string& prompt, uint64_t seed,
                    const Sampling& sampling = {});
  Video loop(const Image& image, const std::string& prompt, uint64_t seed, const Sampling& sampling = {});

  // The prompt's CLIP token ids: start, BPE ids, end, truncated to the text encoder's length and padded with 0
  // (dcrt.models.tokenizer.Tokenizer).
  std::vector<int64_t> tokenize(const std::string& prompt) const;

  int height() const;  // the bundle's video size
  int width() const;
  int fps(const std::string& mode = "animate") const;  // the rate `dcrt MODE` writes at (the bundle's), 0: none
  std::string describe() const;  // "tiny (aoti, cpu)": for logs

  struct Impl;

 private:
  Video generate(const std::string& mode, const std::vector<const Image*>& images, const std::string& prompt,
                 uint64_t seed, const Sampling& sampling);
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The frames as PNG files DIR/000.png ... (the names `dcrt animate --format png` gives), written into DIR.partial
// and renamed (no partial folder on failure);
// an existing DIR is refused.
void write_frames(const Video& video, const std::string& dir);
// H.264 mp4 (yuv420p, as dcrt.video writes it) through the `ffmpeg` on PATH, at `fps` (0: the video's). Returns
// false when no ffmpeg is on PATH (nothing written); throws when ffmpeg fails.
bool write_mp4(const Video& video, const std::string& path, int fps = 0);
// The mp4's bytes, as write_mp4 makes them (a temporary file in $TMPDIR); throws when there is no ffmpeg.
std::vector<uint8_t> encode_mp4(const Video& video, int fps = 0);

}  // namespace dcrt
