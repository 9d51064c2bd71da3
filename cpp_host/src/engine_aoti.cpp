// AOTInductor implementation of the engine interface: one torch::inductor::AOTIModelPackageLoader per
// `<component>.pt2` package, loaded once. Buffers are wrapped as tensors without copying; the package's
// outputs are copied into the caller's buffers (AOTInductor allocates its outputs itself).
#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/version.h>

#include <map>

#include "engine.h"
#include "errors.h"

namespace dcrt_host {

namespace {

at::ScalarType scalar_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return at::kFloat;
    case DType::kInt64: return at::kLong;
    case DType::kUInt8: return at::kByte;
  }
  return at::kFloat;
}

class AotiEngine : public Engine {
 public:
  AotiEngine(const Bundle& bundle, Device device) : bundle_(bundle), device_(device) {
    for (const auto& [name, spec] : bundle.components) {
      try {
        loaders_[name] = std::make_unique<torch::inductor::AOTIModelPackageLoader>(bundle.path(spec.file));
      } catch (const std::exception& e) {
        throw HostError("cannot load " + bundle.path(spec.file) + ": " + first_line(e.what()));
      }
    }
  }

  Device device() const override { return device_; }

  void run(const std::string& component, const std::vector<const void*>& inputs, const std::vector<void*>& outputs,
           void* stream) override {
    const ComponentSpec& spec = bundle_.component(component);
    const auto options = at::TensorOptions().device(device_ == Device::kCUDA ? at::kCUDA : at::kCPU);
    std::vector<at::Tensor> args;
    for (size_t k = 0; k < spec.inputs.size(); ++k) {
      const TensorSpec& t = spec.inputs[k];
      args.push_back(at::from_blob(const_cast<void*>(inputs[k]), t.shape, options.dtype(scalar_type(t.dtype))));
    }
    std::vector<at::Tensor> results;
    try {
      results = loaders_.at(component)->run(args, stream);
    } catch (const std::exception& e) {
      throw HostError(component + " failed: " + first_line(e.what()));
    }
    if (results.size() != spec.outputs.size())
      throw HostError(component + " returned " + std::to_string(results.size()) + " outputs, its manifest lists " +
                      std::to_string(spec.outputs.size()));
    for (size_t k = 0; k < results.size(); ++k) {
      const TensorSpec& t = spec.outputs[k];
      if (results[k].sizes().vec() != t.shape)
        throw HostError(component + " output " + t.name + " is " + shape_string(results[k].sizes().vec()) +
                        ", the manifest says " + shape_string(t.shape));
      // Copied by torch on its current stream (the legacy default stream, which the host also uses).
      at::from_blob(outputs[k], t.shape, options.dtype(scalar_type(t.dtype))).copy_(results[k]);
    }
  }

 private:
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

  const Bundle& bundle_;
  Device device_;
  std::map<std::string, std::unique_ptr<torch::inductor::AOTIModelPackageLoader>> loaders_;
};

}  // namespace

std::unique_ptr<Engine> open_aoti_engine(const Bundle& bundle, Device device) {
  const std::string wanted = device == Device::kCUDA ? "cuda" : "cpu";
  if (bundle.device != wanted)
    throw HostError(bundle.dir + " was compiled for " + bundle.device + ", not " + wanted + ": run with --device " +
                    bundle.device + ", or rebuild it with `dcrt build --engine aoti --device " + wanted + "`");
  // A package runs only with the libtorch it was compiled against (docs/bundles.md, step 1); the local
  // version suffix (+cu130, +cpu) names the wheel's CUDA build, which the packages do not depend on.
  const std::string built = bundle.torch_version.substr(0, bundle.torch_version.find('+'));
  if (!built.empty() && built != TORCH_VERSION)
    throw HostError(bundle.dir + " was compiled with torch " + bundle.torch_version + ", this dcrt_host links torch " +
                    TORCH_VERSION + ": rebuild the bundle, or build the host against that torch (-DTORCH_DIR)");
  return std::make_unique<AotiEngine>(bundle, device);
}

}  // namespace dcrt_host
