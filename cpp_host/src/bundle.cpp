#include "bundle.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "errors.h"
#include "files.h"

namespace dcrt_host {

namespace {

using Json = nlohmann::json;

// A key the manifest must have; its absence is reported by name (nlohmann's at() says only "key not found").
struct MissingKey : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const Json& key(const Json& object, const char* name) {
  if (!object.is_object() || !object.contains(name)) throw MissingKey("missing JSON key \"" + std::string(name) + "\"");
  return object[name];
}

bool present(const Json& object, const char* name) {
  return object.is_object() && object.contains(name) && !object[name].is_null();
}

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
  for (const Json& t : list)
    specs.push_back({key(t, "name").get<std::string>(), dtype_from_name(key(t, "dtype").get<std::string>()),
                     key(t, "shape").get<std::vector<int64_t>>()});
  return specs;
}

// v or eps: the manifest's "parameterization" when it has one; else the schedule says it, because
// v-models store zeros in sqrt_recip_alphas_cumprod (infinite at t = 999 under zero SNR; dcrt.families.dynamicrafter.schedule).
bool is_v_model(const Json& manifest, const std::map<std::string, Tensor>& schedule) {
  if (present(manifest, "parameterization")) return manifest["parameterization"].get<std::string>() == "v";
  const auto it = schedule.find("sqrt_recip_alphas_cumprod");
  if (it == schedule.end()) throw HostError("schedule.safetensors has no sqrt_recip_alphas_cumprod");
  for (int64_t k = 0; k < it->second.numel(); ++k)
    if (it->second.f32()[k] != 0.0f) return false;
  return true;
}

// One mode's recorded defaults ("sampling" for animate, "modes"."interpolate" ...); image_guidance_scale null:
// two-way guidance.
ModeDefaults mode_defaults(const Json& s) {
  SamplingOptions o;
  o.steps = key(s, "steps").get<int>();
  o.timestep_spacing = key(s, "timestep_spacing").get<std::string>();
  o.eta = key(s, "eta").get<double>();
  o.frame_stride = key(s, "frame_stride").get<int64_t>();
  o.guidance.guidance_scale = key(s, "guidance_scale").get<double>();
  o.guidance.guidance_rescale = key(s, "guidance_rescale").get<double>();
  const Json& image_scale = key(s, "image_guidance_scale");
  o.guidance.image_guidance = !image_scale.is_null() && image_scale.get<double>() != 1.0;
  o.guidance.image_guidance_scale = o.guidance.image_guidance ? image_scale.get<double>() : 0.0;
  return {o, present(s, "fps") ? std::optional<int>(s["fps"].get<int>()) : std::nullopt};
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
  b.engine_kind = present(m, "engine_kind") ? m["engine_kind"].get<std::string>() : "tensorrt";
  if (b.engine_kind != "aoti" && b.engine_kind != "tensorrt")
    throw HostError(manifest_path + ": unknown engine_kind \"" + b.engine_kind + "\" (aoti or TensorRT expected)");
  b.device = b.engine_kind == "aoti" ? key(m, "device").get<std::string>() : "cuda";
  b.torch_version = present(m, "torch_version") ? m["torch_version"].get<std::string>() : "";
  if (b.engine_kind == "tensorrt") {
    b.tensorrt_version = key(m, "tensorrt_version").get<std::string>();
    b.gpu_name = key(m, "gpu_name").get<std::string>();
    b.compute_capability = key(m, "compute_capability").get<std::vector<int>>();
  }
  b.preset = key(m, "preset").get<std::string>();
  b.height = key(m, "height").get<int>();
  b.width = key(m, "width").get<int>();
  b.tokenizer = present(m, "tokenizer") ? m["tokenizer"].get<std::string>() : "";
  for (const auto& [name, entry] : key(m, "engines").items()) {
    ComponentSpec c{name, key(entry, "file").get<std::string>(), tensor_specs(key(entry, "inputs")),
                    tensor_specs(key(entry, "outputs"))};
    check_file(b.path(c.file), present(entry, "bytes") ? entry["bytes"].get<long long>() : -1, b.preset);
    b.components.emplace(name, c);
  }
  // Stable Video Diffusion's graphs take no text and sample by EDM, with no schedule file (docs/bundles.md).
  if (!b.components.count("text_encoder") && b.components.count("unet") && !b.components.count("unet_image_guidance"))
    throw HostError(dir + " is a " + b.preset + " bundle (Stable Video Diffusion), which this host does not run: " +
                    "use the Python pipeline (dcrt animate --res " + b.preset + " --backend " +
                    (b.engine_kind == "aoti" ? "aoti" : "trt") + ")");
  const auto decoder = b.components.find("vae_decoder");
  if (decoder != b.components.end() && decoder->second.inputs.size() != 1)
    throw HostError(dir + " is a " + b.preset + " bundle: its decoder takes the key frames' reference features " +
                    "(ToonCrafter), which this host does not run; use the Python pipeline (dcrt interpolate --res " +
                    b.preset + " --backend aoti)");
  b.schedule = read_safetensors(b.path("schedule.safetensors"));
  b.v_model = is_v_model(m, b.schedule);
  if (present(m, "sampling")) b.defaults.emplace("animate", mode_defaults(m["sampling"]));
  b.modes_recorded = present(m, "modes");
  if (b.modes_recorded)
    for (const auto& [mode, entry] : m["modes"].items()) b.defaults.emplace(mode, mode_defaults(entry));
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
  } catch (const MissingKey& e) {
    throw HostError(manifest_path + " is not a valid bundle manifest (" + e.what() + ")");
  } catch (const Json::exception& e) {  // malformed JSON, or a value of the wrong type
    throw HostError(manifest_path + " is not a valid bundle manifest (" + e.what() + ")");
  }
}

}  // namespace dcrt_host
