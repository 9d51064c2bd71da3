// The public library (include/dcrt/host.h): a bundle opened once, then animate from an image of any size, a prompt
// and a seed. The pieces: image.cpp (decode, resize, crop), tokenizer.cpp, noise.cpp, generate.cpp.
#include <dcrt/host.h>

#include <mutex>

#include "bundle.h"
#include "engine.h"
#include "errors.h"
#include "generate.h"
#include "image.h"
#include "noise.h"
#include "tokenizer.h"

namespace dcrt {

using namespace dcrt_host;

struct Engine::Impl {
  Bundle bundle;
  ClipTokenizer tokenizer;
  std::unique_ptr<dcrt_host::Engine> engine;
  std::string device;
  std::mutex running;  // one call at a time (the graphs' buffers and the packages are not reentrant)

  Impl(Bundle b, const std::string& device_name)
      : bundle(std::move(b)), tokenizer(bundle.path(bundle.tokenizer)), device(device_name) {
    engine = open_engine(bundle, device_from_name(device_name));
  }
};

namespace {

// What this library needs besides the graphs (bundle.cpp refuses the bundles of other models): the vocabulary.
void check_runnable(const Bundle& b) {
  // Both builds write it (dcrt.artifacts.host_files); a bundle built before they did gains it from a rebuild, which
  // keeps its up-to-date packages or plans.
  if (b.tokenizer.empty())
    throw HostError(b.dir + "/manifest.json names no tokenizer vocabulary (an older dcrt built it): run `dcrt build " +
                    "--res " + b.preset + (b.engine_kind == "aoti" ? " --engine aoti" : "") + "` again");
}

// The bundle's defaults for `mode` with the caller's settings applied. A manifest written before dcrt recorded them
// (a TensorRT bundle of an older dcrt) has none: then every setting but image_guidance_scale must be given (named by its command-line flag, which says the field too).
SamplingOptions resolve(const Bundle& bundle, const std::string& mode, const Sampling& s) {
  const auto recorded = bundle.defaults.find(mode);
  if (recorded == bundle.defaults.end() && bundle.modes_recorded)
    throw HostError(bundle.dir + " is a " + bundle.preset + " bundle, which has no " + mode + " mode");
  if (recorded == bundle.defaults.end()) {
    const std::pair<bool, const char*> needed[] = {
        {s.steps.has_value(), "--steps"},
        {s.timestep_spacing.has_value(), "--timestep-spacing"},
        {s.eta.has_value(), "--eta"},
        {s.frame_stride.has_value(), "--frame-stride"},
        {s.guidance_scale.has_value(), "--guidance-scale"},
        {s.guidance_rescale.has_value(), "--guidance-rescale"},
    };
    for (const auto& [given, flag] : needed)
      if (!given) throw HostError(bundle.dir + "/manifest.json records no sampling defaults: pass " + flag);
  }
  SamplingOptions o = recorded != bundle.defaults.end() ? recorded->second.options : SamplingOptions{};
  if (s.steps) o.steps = *s.steps;
  if (s.timestep_spacing) o.timestep_spacing = *s.timestep_spacing;
  if (s.eta) o.eta = *s.eta;
  if (s.frame_stride) o.frame_stride = *s.frame_stride;
  if (s.guidance_scale) o.guidance.guidance_scale = *s.guidance_scale;
  if (s.guidance_rescale) o.guidance.guidance_rescale = *s.guidance_rescale;
  if (s.image_guidance_scale) {  // as dcrt.families.dynamicrafter.pipeline.guidance_for: a scale of 1 is none
    o.guidance.image_guidance = *s.image_guidance_scale != 1.0;
    o.guidance.image_guidance_scale = o.guidance.image_guidance ? *s.image_guidance_scale : 0.0;
  }
  if (o.steps < 1) throw HostError("--steps must be >= 1");
  if (o.eta < 0.0) throw HostError("--eta must be >= 0");
  return o;
}

Tensor image_tensor(const Image& image) {
  if (image.width < 1 || image.height < 1 ||
      image.rgb.size() != static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3)
    throw HostError("the image must hold width x height x 3 bytes of RGB, got " + std::to_string(image.rgb.size()) +
                    " bytes for " + std::to_string(image.width) + "x" + std::to_string(image.height));
  Tensor t = Tensor::zeros(DType::kUInt8, {image.height, image.width, 3});
  t.bytes = image.rgb;
  return t;
}

Image from_tensor(const Tensor& t) {
  Image image;
  image.height = static_cast<int>(t.shape[0]);
  image.width = static_cast<int>(t.shape[1]);
  image.rgb = t.bytes;
  return image;
}

}  // namespace

Image read_image(const std::string& path) { return from_tensor(read_image_file(path)); }

Image decode_image(const std::vector<uint8_t>& bytes, const std::string& name) {
  return from_tensor(dcrt_host::decode_image(bytes, name));
}

std::unique_ptr<Engine> Engine::open(const std::string& bundle_dir, const std::string& device) {
  Bundle bundle = read_bundle(bundle_dir);
  check_runnable(bundle);
  const std::string name = device.empty() ? bundle.device : device;
  return std::unique_ptr<Engine>(new Engine(std::make_unique<Impl>(std::move(bundle), name)));
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

int Engine::height() const { return impl_->bundle.height; }
int Engine::width() const { return impl_->bundle.width; }
int Engine::fps(const std::string& mode) const {
  const auto it = impl_->bundle.defaults.find(mode);
  return it != impl_->bundle.defaults.end() ? it->second.fps.value_or(0) : 0;
}

std::string Engine::describe() const {
  const Bundle& b = impl_->bundle;
  return b.preset + " (" + b.engine_kind + ", " + impl_->device + ") from " + b.dir;
}

std::vector<int64_t> Engine::tokenize(const std::string& prompt) const {
  return impl_->tokenizer.tokens(prompt, impl_->bundle.component("text_encoder").inputs[0].shape[1]);
}

Video Engine::animate(const Image& image, const std::string& prompt, uint64_t seed, const Sampling& sampling) {
  return generate("animate", {&image}, prompt, seed, sampling);
}

Video Engine::interpolate(const Image& first, const Image& last, const std::string& prompt, uint64_t seed,
                          const Sampling& sampling) {
  return generate("interpolate", {&first, &last}, prompt, seed, sampling);
}

Video Engine::loop(const Image& image, const std::string& prompt, uint64_t seed, const Sampling& sampling) {
  return generate("loop", {&image}, prompt, seed, sampling);
}

Video Engine::generate(const std::string& mode, const std::vector<const Image*>& images, const std::string& prompt,
                       uint64_t seed, const Sampling& sampling) {
  const Bundle& b = impl_->bundle;
  const SamplingOptions options = resolve(b, mode, sampling);  // bad settings fail before any work
  const int64_t length = b.component("text_encoder").inputs[0].shape[1];
  HostInputs inputs{mode, {}, Tensor::zeros(DType::kInt64, {2, length}), {}};
  for (const Image* image : images) inputs.images.push_back(resize_and_crop(image_tensor(*image), b.height, b.width));
  const std::vector<int64_t> ids = impl_->tokenizer.tokens(prompt, length), empty = impl_->tokenizer.tokens("", length);
  std::copy(ids.begin(), ids.end(), inputs.tokens.i64());
  std::copy(empty.begin(), empty.end(), inputs.tokens.i64() + length);
  // Pipeline.sample's draws: x_T [1, 4, T, h, w], then one per step the schedule visits when eta > 0.
  std::vector<int64_t> x = b.component("unet").outputs[0].shape;
  x[0] = 1;
  const int64_t steps =
      build_ddim_schedule(b.schedule, b.v_model, options.steps, options.timestep_spacing, options.eta).num_steps();
  inputs.noise = seeded_noise(seed, x, options.eta > 0.0 ? 1 + steps : 1, impl_->device == "cuda");
  const std::lock_guard<std::mutex> lock(impl_->running);
  Video video = dcrt_host::generate(b, *impl_->engine, options, inputs);
  video.fps = fps(mode);
  return video;
}

}  // namespace dcrt
