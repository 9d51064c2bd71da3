// A bundle directory as the host sees it: manifest.json (which graphs, their positional IO specs, what
// kind of engine) and schedule.safetensors. Both manifests of docs/bundles.md are read: an AOTInductor
// bundle's ("engine_kind": "aoti") and a TensorRT bundle's (no engine_kind); both list their graphs under "engines".
#pragma once

#include <map>
#include <string>
#include <vector>

#include <optional>

#include "step.h"
#include "tensor.h"

namespace dcrt_host {

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  size_t bytes() const { return static_cast<size_t>(element_count(shape)) * dtype_size(dtype); }
};

struct ComponentSpec {
  std::string name, file;  // file: relative to the bundle directory
  std::vector<TensorSpec> inputs, outputs;
};

// A run's settings (dcrt.families.dynamicrafter.options.SamplingOptions' names). An AOTInductor manifest records the
// preset's defaults per mode (dcrt.artifacts.aoti_build.host_fields): the host starts from those, never from copies.
struct SamplingOptions {
  int steps = 0;
  std::string timestep_spacing;
  double eta = 0.0;
  int64_t frame_stride = 0;
  Guidance guidance;
};

// A mode's settings as the manifest records them, and the frame rate `dcrt` writes its video at (none in an
// AOTInductor manifest written before dcrt recorded it).
struct ModeDefaults {
  SamplingOptions options;
  std::optional<int> fps;
};

struct Bundle {
  std::string dir;
  std::string engine_kind;  // "aoti" or "tensorrt"
  std::string device;       // what the packages were compiled for: "cpu" or "cuda"
  std::string torch_version;  // AOTInductor: the torch the packages were compiled with ("2.14.1+cu130")
  // TensorRT: what the plans were built for ("10.13.0", "NVIDIA H100 80GB HBM3", {9, 0})
  std::string tensorrt_version, gpu_name;
  std::vector<int> compute_capability;
  std::string preset;
  int height = 0, width = 0;
  bool v_model = true;  // the UNet predicts v (else eps)
  // Each mode's defaults: "animate" from the manifest's "sampling", the others from its "modes" (none in a TensorRT
  // manifest). `modes_recorded`: the manifest lists the preset's modes, so a mode without defaults is one it lacks.
  std::map<std::string, ModeDefaults> defaults;
  bool modes_recorded = false;
  // The CLIP BPE vocabulary `dcrt build` writes beside the graphs (a file name; empty in a bundle built before it
  // did, or in one without a text encoder).
  std::string tokenizer;
  std::map<std::string, ComponentSpec> components;
  std::map<std::string, Tensor> schedule;

  const ComponentSpec& component(const std::string& name) const;  // throws: names the missing graph
  std::string path(const std::string& file) const { return dir + "/" + file; }
};

Bundle read_bundle(const std::string& dir);

}  // namespace dcrt_host
