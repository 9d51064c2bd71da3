#include "generate.h"

#include <cstring>
#include <memory>

#include "errors.h"
#include "preprocess.h"
#include "step_ops.h"

namespace dcrt_host {

namespace {

// One graph call with host tensors in and out: conditioning and decoding run a few times per video, so
// the copies there cost nothing worth avoiding (the loop below keeps everything on the device).
std::vector<Tensor> run_host(Engine& engine, const ComponentSpec& spec, const std::vector<const Tensor*>& inputs) {
  const Device device = engine.device();
  std::vector<std::unique_ptr<Buffer>> in, out;
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;
  if (inputs.size() != spec.inputs.size())
    throw HostError(spec.name + " takes " + std::to_string(spec.inputs.size()) + " inputs, the host gives " +
                    std::to_string(inputs.size()) + ": a bundle of another model family?");
  for (size_t k = 0; k < spec.inputs.size(); ++k) {
    const TensorSpec& t = spec.inputs[k];
    if (inputs[k]->shape != t.shape || inputs[k]->dtype != t.dtype)
      throw HostError(spec.name + ": input " + t.name + " must be " + dtype_name(t.dtype) + " " +
                      shape_string(t.shape) + ", got " + shape_string(inputs[k]->shape));
    in.push_back(std::make_unique<Buffer>(device, t.bytes()));
    copy_to_device(device, in.back()->data(), inputs[k]->bytes.data(), t.bytes(), nullptr);
    in_ptrs.push_back(in.back()->data());
  }
  for (const TensorSpec& t : spec.outputs) {
    out.push_back(std::make_unique<Buffer>(device, t.bytes()));
    out_ptrs.push_back(out.back()->data());
  }
  engine.run(spec.name, in_ptrs, out_ptrs, nullptr);
  std::vector<Tensor> results;
  for (size_t k = 0; k < spec.outputs.size(); ++k) {
    results.push_back(Tensor::zeros(spec.outputs[k].dtype, spec.outputs[k].shape));
    copy_to_host(device, results.back().bytes.data(), out_ptrs[k], spec.outputs[k].bytes(), nullptr);
  }
  return results;
}

// Row `row` of a tensor's first axis, as a tensor of batch 1.
Tensor row_of(const Tensor& t, int64_t row) {
  std::vector<int64_t> shape = t.shape;
  shape[0] = 1;
  Tensor r = Tensor::zeros(t.dtype, shape);
  std::memcpy(r.bytes.data(), t.bytes.data() + row * r.bytes.size(), r.bytes.size());
  return r;
}

struct Conditioning {
  Tensor context;      // float32 [branches, L_text + L_image, C]: conditional, unconditional[, image-only]
  Tensor first, last;  // float32 [4, h, w]: the first and last key frames' VAE latents (one image: both the same)
  bool every_frame;    // animate: c_concat is the latent at every frame; interpolate / loop: key frames at the ends
};

// dcrt.families.dynamicrafter.pipeline.Pipeline.conditioning + unconditional.
Conditioning condition(const Bundle& bundle, Engine& engine, const HostInputs& in, int branches) {
  const ComponentSpec& text = bundle.component("text_encoder");
  const ComponentSpec& image = bundle.component("image_encoder");
  const ComponentSpec& vae = bundle.component("vae_encoder");
  const Tensor prompt = row_of(in.tokens, 0), empty = row_of(in.tokens, 1);
  const Tensor c_text = run_host(engine, text, {&prompt})[0], uc_text = run_host(engine, text, {&empty})[0];
  const int size = static_cast<int>(image.inputs[0].shape[2]);
  const Tensor pixels = image_to_pixels(in.images.front());
  const Tensor c_pixels = clip_pixels(pixels, size);  // the first image's CLIP embedding
  // The unconditional image: zeros in [-1, 1] (mid-grey) at the CLIP size, as Pipeline.unconditional.
  const Tensor uc_pixels = clip_pixels(Tensor::zeros(DType::kFloat32, {1, 3, size, size}), size);
  const Tensor c_image = run_host(engine, image, {&c_pixels})[0], uc_image = run_host(engine, image, {&uc_pixels})[0];
  // The encoder takes VAE_ENCODE_FRAMES frames: the key frames, padded with copies of the last (as
  // StaticShapeBackend.encode_latents).
  const int64_t keys = static_cast<int64_t>(in.images.size());
  if (keys > vae.inputs[0].shape[0]) throw HostError("the VAE encoder takes at most " + shape_string(vae.inputs[0].shape));
  Tensor frames = Tensor::zeros(DType::kFloat32, vae.inputs[0].shape);
  for (int64_t k = 0; k < frames.shape[0]; ++k) {
    const Tensor key = k == 0 ? pixels : image_to_pixels(in.images[static_cast<size_t>(std::min(k, keys - 1))]);
    std::memcpy(frames.bytes.data() + k * key.bytes.size(), key.bytes.data(), key.bytes.size());
  }
  const Tensor z = run_host(engine, vae, {&frames})[0];
  Conditioning c;
  c.first = row_of(z, 0);
  c.first.shape.erase(c.first.shape.begin());
  c.last = row_of(z, keys - 1);
  c.last.shape.erase(c.last.shape.begin());
  c.every_frame = in.mode == "animate";
  const std::vector<const Tensor*> parts[3] = {{&c_text, &c_image}, {&uc_text, &uc_image}, {&uc_text, &c_image}};
  const int64_t tokens = c_text.shape[1] + c_image.shape[1], width = c_text.shape[2];
  c.context = Tensor::zeros(DType::kFloat32, {branches, tokens, width});
  uint8_t* dst = c.context.bytes.data();
  for (int b = 0; b < branches; ++b)
    for (const Tensor* part : parts[b]) {
      std::memcpy(dst, part->bytes.data(), part->bytes.size());
      dst += part->bytes.size();
    }
  return c;
}

// The UNet's buffers on the engine's device. Everything but x and t is written once: each row's context (rows
// past the guidance branches repeat branch 0), the frame stride, and c_concat (channels 4-7: the image latent
// at every frame). The batch-2 graph serves one branch (no guidance) on duplicated rows, as StaticShapeBackend.
struct UNetBuffers {
  const ComponentSpec& spec;
  int rows;
  int64_t latent;  // 4 * T * h * w: the elements of x (and of c_concat) per row
  Buffer model_in, t, context, fs, out;

  UNetBuffers(const Bundle& bundle, Device device, int branches)
      : spec(bundle.component(branches == 3 ? "unet_image_guidance" : "unet")),
        rows(static_cast<int>(spec.inputs[0].shape[0])),
        latent(element_count(spec.inputs[0].shape) / rows / 2),
        model_in(device, spec.inputs[0].bytes()),
        t(device, spec.inputs[1].bytes()),
        context(device, spec.inputs[2].bytes()),
        fs(device, spec.inputs[3].bytes()),
        out(device, spec.outputs[0].bytes()) {}

  void write_static(Device device, const Conditioning& cond, int branches, int64_t frame_stride) {
    const size_t ctx_row = spec.inputs[2].bytes() / rows;
    if (ctx_row != cond.context.bytes.size() / static_cast<size_t>(cond.context.shape[0]))
      throw HostError(spec.name + ": context " + shape_string(spec.inputs[2].shape) + " does not fit the encoders' " +
                      shape_string(cond.context.shape) + ": the bundle is inconsistent, rebuild it");
    const int64_t frames = spec.inputs[0].shape[2], plane = latent / 4, hw = plane / frames;  // T * h * w, h * w
    // [4, T, h, w]: animate, frame f of channel c = z[c]; else zeros but frame 0 (the first key frame's latent) and
    // frame T - 1 (the last's), as Pipeline.conditioning.
    std::vector<float> concat(static_cast<size_t>(latent), 0.0f);
    for (int64_t c = 0; c < 4; ++c)
      for (int64_t k = 0; k < plane; ++k) {
        const int64_t f = k / hw;
        const Tensor* key = f == 0 || cond.every_frame ? &cond.first : f == frames - 1 ? &cond.last : nullptr;
        if (key != nullptr) concat[c * plane + k] = key->f32()[c * hw + k % hw];
      }
    const std::vector<int64_t> strides(static_cast<size_t>(rows), frame_stride);
    copy_to_device(device, fs.data(), strides.data(), fs.bytes(), nullptr);
    for (int r = 0; r < rows; ++r) {
      const uint8_t* row = cond.context.bytes.data() + (r < branches ? r : 0) * ctx_row;
      copy_to_device(device, context.as<uint8_t>() + r * ctx_row, row, ctx_row, nullptr);
      float* concat_at = model_in.as<float>() + (2 * r + 1) * latent;  // row r, channels 4-7
      copy_to_device(device, concat_at, concat.data(), concat.size() * sizeof(float), nullptr);
    }
  }
};

// The DDIM loop (dcrt.families.dynamicrafter.sampler.sample): x_T -> final latents [1, 4, T, h, w], on the engine's device.
Tensor denoise(const Bundle& bundle, Engine& engine, const SamplingOptions& opts, const DDIMSchedule& schedule,
               const Conditioning& cond, const Tensor& noise) {
  const Device device = engine.device();
  UNetBuffers unet(bundle, device, opts.guidance.branches());
  unet.write_static(device, cond, opts.guidance.branches(), opts.frame_stride);
  const int64_t n = unet.latent;
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  Buffer guided(device, bytes), x(device, bytes), noises(device, noise.bytes.size());
  copy_to_device(device, noises.data(), noise.bytes.data(), noise.bytes.size(), nullptr);
  copy_on_device(device, x.data(), noises.data(), bytes, nullptr);  // x_T: the first draw
  std::unique_ptr<StepOps> ops = step_ops(device, schedule, n);
  for (int k = 0, i = schedule.num_steps() - 1; i >= 0; ++k, --i) {
    for (int r = 0; r < unet.rows; ++r)  // x into channels 0-3 of every row
      copy_on_device(device, unet.model_in.as<float>() + 2 * r * n, x.data(), bytes, nullptr);
    ops->timesteps(unet.t.as<int64_t>(), unet.rows, i, nullptr);
    engine.run(unet.spec.name, {unet.model_in.data(), unet.t.data(), unet.context.data(), unet.fs.data()},
               {unet.out.data()}, nullptr);
    ops->combine(guided.as<float>(), unet.out.as<float>(), n, opts.guidance, nullptr);
    const float* step_noise = opts.eta > 0.0 ? noises.as<float>() + (k + 1) * n : nullptr;  // draw k + 1
    ops->update(x.as<float>(), guided.as<float>(), step_noise, i, n, nullptr);
  }
  const std::vector<int64_t>& shape = unet.spec.inputs[0].shape;
  Tensor result = Tensor::zeros(DType::kFloat32, {1, 4, shape[2], shape[3], shape[4]});
  copy_to_host(device, result.bytes.data(), x.data(), result.bytes.size(), nullptr);
  return result;
}

// Pipeline.decoded_chunks: latents [1, 4, T, h, w] -> frames, `decoder batch` frames per call; a loop leaves out
// its last frame (a repeat of its first).
Video decode(const Bundle& bundle, Engine& engine, const Tensor& latents, const std::string& mode) {
  const ComponentSpec& dec = bundle.component("vae_decoder");
  const int64_t chunk = dec.inputs[0].shape[0], hw = latents.shape[3] * latents.shape[4];
  const int64_t stored = latents.shape[2], frames = mode == "loop" ? stored - 1 : stored;
  Video video;
  video.frames = static_cast<int>(frames), video.height = bundle.height, video.width = bundle.width;
  Tensor z = Tensor::zeros(DType::kFloat32, dec.inputs[0].shape);  // [chunk, 4, h, w]
  for (int64_t start = 0; start < frames; start += chunk) {
    const int64_t count = std::min(chunk, frames - start);
    for (int64_t j = 0; j < chunk; ++j) {  // a short last chunk is padded with its last frame
      const int64_t f = start + std::min(j, count - 1);
      for (int64_t c = 0; c < 4; ++c)
        std::memcpy(z.f32() + (j * 4 + c) * hw, latents.f32() + (c * stored + f) * hw, hw * sizeof(float));
    }
    const Tensor decoded = run_host(engine, dec, {&z})[0];
    const std::vector<uint8_t> rgb = frames_to_u8(decoded.f32(), static_cast<int>(count), bundle.height, bundle.width);
    video.rgb.insert(video.rgb.end(), rgb.begin(), rgb.end());
  }
  return video;
}

void check_inputs(const Bundle& bundle, const HostInputs& in, const DDIMSchedule& schedule, const SamplingOptions& o) {
  const std::vector<int64_t> image{bundle.height, bundle.width, 3};
  if (in.images.size() != (in.mode == "interpolate" ? 2u : 1u))
    throw HostError(in.mode + " takes " + (in.mode == "interpolate" ? "two images" : "one image"));
  for (const Tensor& rgb : in.images)
    if (rgb.shape != image)
      throw HostError("the image is " + std::to_string(rgb.shape[1]) + "x" + std::to_string(rgb.shape[0]) +
                      "; generate takes images at the bundle's size, " + std::to_string(bundle.width) + "x" +
                      std::to_string(bundle.height) + " (resize_and_crop first)");
  const int64_t length = bundle.component("text_encoder").inputs[0].shape[1];
  if (in.tokens.dtype != DType::kInt64 || in.tokens.shape != std::vector<int64_t>{2, length})
    throw HostError("the token ids must be int64 [2, " + std::to_string(length) + "] (prompt, empty prompt): " +
                    "a bundle of another text encoder?");
  std::vector<int64_t> x = bundle.component("unet").outputs[0].shape;
  x[0] = 1;
  x.insert(x.begin(), o.eta > 0.0 ? 1 + schedule.num_steps() : 1);
  if (in.noise.dtype != DType::kFloat32 || in.noise.shape != x)
    throw HostError("the noise must be float32 " + shape_string(x) + " for " + std::to_string(o.steps) +
                    " steps with eta " + std::to_string(o.eta) + ", got " + shape_string(in.noise.shape) +
                    ": drawn for other settings");
}

}  // namespace

Video generate(const Bundle& bundle, Engine& engine, const SamplingOptions& options, const HostInputs& inputs) {
  const DDIMSchedule schedule =
      build_ddim_schedule(bundle.schedule, bundle.v_model, options.steps, options.timestep_spacing, options.eta);
  check_inputs(bundle, inputs, schedule, options);
  const Conditioning cond = condition(bundle, engine, inputs, options.guidance.branches());
  const Tensor latents = denoise(bundle, engine, options, schedule, cond, inputs.noise);
  return decode(bundle, engine, latents, inputs.mode);
}

}  // namespace dcrt_host
