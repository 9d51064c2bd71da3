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

// A run's settings (dcrt.families.dynamicrafter.options.SamplingOptions' names). An AOTInductor manifest records the preset's animate
// defaults under "sampling" (dcrt.artifacts.aoti_build.host_fields): the host starts from those, never from copies.
struct SamplingOptions {
  int steps = 0;
  std::string timestep_spacing;
  double eta = 0.0;
  int64_t frame_stride = 0;
  Guidance guidance;
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
  std::optional<SamplingOptions> sampling;  // the preset's animate defaults; none in a TensorRT manifest
  // The frame rate `dcrt animate` writes the video at ("sampling"."fps"); none in a TensorRT manifest or in an
  // AOTInductor one written before dcrt recorded it.
  std::optional<int> fps;
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
