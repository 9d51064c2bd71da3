#include "bundle.h"

#include <sys/stat.h>

#include "errors.h"
#include "files.h"
#include "json.h"

namespace dcrt_host {

namespace {

bool exists(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0;
}

// Existence and the recorded size cost a stat; a package cut short by a failed copy fails here, not in dlopen.
void check_file(const std::string& path, long long bytes, const std::string& preset) {
  struct stat st{};
  const std::string rebuild = ": rebuild the bundle (dcrt build --res " + preset + " ...)";
  if (stat(path.c_str(), &st) != 0) throw HostError(path + " is missing" + rebuild);
  if (bytes >= 0 && st.st_size != bytes)
    throw HostError(path + " is " + std::to_string(st.st_size) + " bytes, its manifest says " + std::to_string(bytes) +
                    rebuild);
}

std::vector<TensorSpec> tensor_specs(const Json& list) {
  std::vector<TensorSpec> specs;
  for (const Json& t : list.items()) {
    TensorSpec s{t["name"].str(), dtype_from_name(t["dtype"].str()), {}};
    for (const Json& d : t["shape"].items()) s.shape.push_back(d.integer());
    specs.push_back(s);
  }
  return specs;
}

// v or eps: the manifest's "parameterization" when it has one; else the schedule says it, because
// v-models store zeros in sqrt_recip_alphas_cumprod (infinite at t = 999 under zero SNR; dcrt.families.dynamicrafter.schedule).
bool is_v_model(const Json& manifest, const std::map<std::string, Tensor>& schedule) {
  if (manifest.has("parameterization")) return manifest["parameterization"].str() == "v";
  const auto it = schedule.find("sqrt_recip_alphas_cumprod");
  if (it == schedule.end()) throw HostError("schedule.safetensors has no sqrt_recip_alphas_cumprod");
  for (int64_t k = 0; k < it->second.numel(); ++k)
    if (it->second.f32()[k] != 0.0f) return false;
  return true;
}

// The manifest's "sampling" (the preset's animate defaults); image_guidance_scale null: two-way guidance.
std::optional<SamplingOptions> sampling_defaults(const Json& manifest) {
  if (!manifest.has("sampling") || manifest["sampling"].kind() == Json::Kind::kNull) return std::nullopt;
  const Json& s = manifest["sampling"];
  SamplingOptions o;
  o.steps = static_cast<int>(s["steps"].integer());
  o.timestep_spacing = s["timestep_spacing"].str();
  o.eta = s["eta"].num();
  o.frame_stride = s["frame_stride"].integer();
  o.guidance.guidance_scale = s["guidance_scale"].num();
  o.guidance.guidance_rescale = s["guidance_rescale"].num();
  const Json& image_scale = s["image_guidance_scale"];
  o.guidance.image_guidance = image_scale.kind() != Json::Kind::kNull && image_scale.num() != 1.0;
  o.guidance.image_guidance_scale = o.guidance.image_guidance ? image_scale.num() : 0.0;
  return o;
}

// The manifest's "sampling"."fps", when it records one.
std::optional<int> recorded_fps(const Json& manifest) {
  if (!manifest.has("sampling") || manifest["sampling"].kind() == Json::Kind::kNull) return std::nullopt;
  const Json& s = manifest["sampling"];
  if (!s.has("fps")) return std::nullopt;
  return static_cast<int>(s["fps"].integer());
}

}  // namespace

const ComponentSpec& Bundle::component(const std::string& name) const {
  const auto it = components.find(name);
  if (it == components.end()) throw HostError(dir + "/manifest.json has no component " + name + ": rebuild the bundle");
  return it->second;
}

namespace {

Bundle parse_bundle(const std::string& dir, const Json& m) {
  const std::string manifest_path = dir + "/manifest.json";
  Bundle b;
  b.dir = dir;
  // An AOTInductor manifest says "engine_kind": "aoti"; a TensorRT one has none (docs/bundles.md).
  b.engine_kind = m.has("engine_kind") ? m["engine_kind"].str() : "tensorrt";
  if (b.engine_kind != "aoti" && b.engine_kind != "tensorrt")
    throw HostError(manifest_path + ": unknown engine_kind \"" + b.engine_kind + "\" (aoti or TensorRT expected)");
  b.device = b.engine_kind == "aoti" ? m["device"].str() : "cuda";
  b.torch_version = m.has("torch_version") ? m["torch_version"].str() : "";
  if (b.engine_kind == "tensorrt") {
    b.tensorrt_version = m["tensorrt_version"].str();
    b.gpu_name = m["gpu_name"].str();
    for (const Json& v : m["compute_capability"].items()) b.compute_capability.push_back(static_cast<int>(v.integer()));
  }
  b.preset = m["preset"].str();
  b.height = static_cast<int>(m["height"].integer());
  b.width = static_cast<int>(m["width"].integer());
  for (const auto& [name, entry] : m["engines"].fields()) {
    ComponentSpec c{name, entry["file"].str(), tensor_specs(entry["inputs"]), tensor_specs(entry["outputs"])};
    check_file(b.path(c.file), entry.has("bytes") ? entry["bytes"].integer() : -1, b.preset);
    b.components.emplace(name, c);
  }
  // Stable Video Diffusion's graphs take no text and sample by EDM, with no schedule file (docs/bundles.md).
  if (!b.components.count("text_encoder") && b.components.count("unet") && !b.components.count("unet_image_guidance"))
    throw HostError(dir + " is a " + b.preset + " bundle (Stable Video Diffusion), which this host does not run: " +
                    "use the Python pipeline (dcrt animate --res " + b.preset + " --backend " +
                    (b.engine_kind == "aoti" ? "aoti" : "trt") + ")");
  b.schedule = read_safetensors(b.path("schedule.safetensors"));
  b.v_model = is_v_model(m, b.schedule);
  b.sampling = sampling_defaults(m);
  b.fps = recorded_fps(m);
  return b;
}

}  // namespace

Bundle read_bundle(const std::string& dir) {
  const std::string manifest_path = dir + "/manifest.json";
  if (!exists(manifest_path))
    throw HostError(dir + (exists(dir) ? " has no manifest.json" : " does not exist") +
                    ": build one with `dcrt build --res tiny --engine aoti`");
  try {
    return parse_bundle(dir, Json::parse(read_text(manifest_path)));
  } catch (const JsonError& e) {
    throw HostError(manifest_path + " is not a valid bundle manifest (" + e.what() + ")");
  }
}

}  // namespace dcrt_host
