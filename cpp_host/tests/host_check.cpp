// dcrt_host_check: the host's numeric pieces on .npy files, for tests/test_cpp_host.py to compare with the
// Python references (dcrt.families.dynamicrafter.schedule, dcrt.families.dynamicrafter.sampler, dcrt.models.clip, dcrt.images). One subcommand per piece:
//   schedule SCHEDULE.safetensors v|eps STEPS SPACING ETA OUT_DIR     -> OUT_DIR/{timesteps,table}.npy
//   step SCHEDULE.safetensors v|eps STEPS SPACING ETA I OUT.npy X.npy NOISE.npy|- SCALE IMAGE_SCALE|- RESCALE
//        RESULT.npy
//   clip IMAGE.npy SIZE RESULT.npy                                      (float32 [1, 3, H, W] in [-1, 1])
//   frames VIDEO.npy RESULT.npy                                         (float32 [T, 3, H, W])
//   pixels IMAGE H W RESULT.npy [IMAGE H W RESULT.npy ...]
//                                            (PNG / JPEG, resized and cropped to H x W -> [1, 3, H, W] in [-1, 1])
//   tokens VOCABULARY PROMPTS.json LENGTH RESULT.npy                    (a JSON list of N prompts -> int64 [N, L])
//   noise SEED DRAWS C T H W RESULT.npy                                 (float32 [DRAWS, 1, C, T, H, W])
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "errors.h"
#include "files.h"
#include "image.h"
#include "noise.h"
#include "preprocess.h"
#include "schedule.h"
#include "step.h"
#include "tokenizer.h"

using namespace dcrt_host;

namespace {

DDIMSchedule schedule_from(char** a) {  // a: SCHEDULE v|eps STEPS SPACING ETA
  return build_ddim_schedule(read_safetensors(a[0]), std::string(a[1]) == "v", std::stoi(a[2]), a[3], std::stod(a[4]));
}

Tensor floats(std::vector<int64_t> shape, const float* data) {
  Tensor t = Tensor::zeros(DType::kFloat32, std::move(shape));
  std::copy(data, data + t.numel(), t.f32());
  return t;
}

void schedule_cmd(char** a) {
  const DDIMSchedule s = schedule_from(a);
  Tensor ts = Tensor::zeros(DType::kInt64, {s.num_steps()});
  std::copy(s.timesteps.begin(), s.timesteps.end(), ts.i64());
  write_npy(std::string(a[5]) + "/timesteps.npy", ts);
  write_npy(std::string(a[5]) + "/table.npy", floats({kNumCoefs, s.num_steps()}, s.table().data()));
}

// Guidance combine of OUT [branches * B, ...] then the DDIM update of X [B, ...] at position I.
void step_cmd(char** a) {
  const DDIMSchedule s = schedule_from(a);
  const int i = std::stoi(a[5]);
  const Tensor out = read_npy(a[6]), x = read_npy(a[7]);
  const bool noisy = std::string(a[8]) != "-";
  const Tensor noise = noisy ? read_npy(a[8]) : Tensor();
  Guidance g;
  g.guidance_scale = std::stod(a[9]);
  g.image_guidance = std::string(a[10]) != "-";
  g.image_guidance_scale = g.image_guidance ? std::stod(a[10]) : 0.0;
  g.guidance_rescale = std::stod(a[11]);
  const int batch = static_cast<int>(x.shape[0]);
  const int64_t n = x.numel() / batch;
  Tensor guided = Tensor::zeros(DType::kFloat32, x.shape), result = Tensor::zeros(DType::kFloat32, x.shape);
  combine_guidance(guided.f32(), out.f32(), n, batch, g);
  ddim_step(result.f32(), x.f32(), guided.f32(), noisy ? noise.f32() : nullptr, s, i, x.numel());
  write_npy(a[12], result);
}

void clip_cmd(char** a) { write_npy(a[2], clip_pixels(read_npy(a[0]), std::stoi(a[1]))); }

void frames_cmd(char** a) {
  const Tensor video = read_npy(a[0]);
  const int t = static_cast<int>(video.shape[0]), h = static_cast<int>(video.shape[2]);
  const int w = static_cast<int>(video.shape[3]);
  Tensor out = Tensor::zeros(DType::kUInt8, {t, h, w, 3});
  out.bytes = frames_to_u8(video.f32(), t, h, w);
  write_npy(a[1], out);
}

void pixels_cmd(char** a) {
  write_npy(a[3], image_to_pixels(resize_and_crop(read_image_file(a[0]), std::stoi(a[1]), std::stoi(a[2]))));
}

void tokens_cmd(char** a) {
  const ClipTokenizer tokenizer(a[0]);
  const auto prompts = nlohmann::json::parse(read_text(a[1])).get<std::vector<std::string>>();
  const int64_t length = std::stoll(a[2]);
  Tensor out = Tensor::zeros(DType::kInt64, {static_cast<int64_t>(prompts.size()), length});
  for (size_t k = 0; k < prompts.size(); ++k) {
    const std::vector<int64_t> ids = tokenizer.tokens(prompts[k], length);
    std::copy(ids.begin(), ids.end(), out.i64() + static_cast<int64_t>(k) * length);
  }
  write_npy(a[3], out);
}

void noise_cmd(char** a) {
  const std::vector<int64_t> shape{1, std::stoll(a[2]), std::stoll(a[3]), std::stoll(a[4]), std::stoll(a[5])};
  write_npy(a[6], seeded_noise(std::stoull(a[0]), shape, std::stoll(a[1])));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  const std::map<std::string, int> arity = {{"schedule", 6}, {"step", 13}, {"clip", 3},   {"frames", 2},
                                            {"pixels", 4},   {"tokens", 4}, {"noise", 7}};
  const int need = arity.count(cmd) ? arity.at(cmd) : -1;
  // pixels repeats: one process (libtorch's loading is most of its time) for many images.
  const bool fits = cmd == "pixels" ? argc > 2 && (argc - 2) % need == 0 : argc - 2 == need;
  if (need < 0 || !fits) {
    std::fprintf(stderr, "usage: dcrt_host_check schedule|step|clip|frames|pixels|tokens|noise ARGS (see the source)\n");
    return 2;
  }
  try {
    char** a = argv + 2;
    if (cmd == "schedule") schedule_cmd(a);
    else if (cmd == "step") step_cmd(a);
    else if (cmd == "clip") clip_cmd(a);
    else if (cmd == "frames") frames_cmd(a);
    else if (cmd == "pixels")
      for (int k = 0; k < argc - 2; k += need) pixels_cmd(a + k);
    else if (cmd == "tokens") tokens_cmd(a);
    else noise_cmd(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dcrt_host_check: %s\n", e.what());
    return 2;
  }
  return 0;
}
