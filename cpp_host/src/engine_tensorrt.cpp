// TensorRT implementation of the engine interface, written to docs/bundles.md's "Running a bundle"
// sequence: one IRuntime, every plan deserialized once, one shared scratch block of the largest
// getDeviceMemorySizeV2() handed to every kUSER_MANAGED context with setDeviceMemoryV2, tensors bound with
// setTensorAddress, enqueueV3 on the host's stream. CMake builds this file only where NvInfer.h is found.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "engine.h"
#include "errors.h"
#include "files.h"

namespace dcrt_host {

namespace {

class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "dcrt_host: TensorRT: %s\n", message);
  }
};

struct Plan {
  std::unique_ptr<nvinfer1::ICudaEngine> engine;
  std::unique_ptr<nvinfer1::IExecutionContext> context;
  std::vector<const void*> bound;  // the addresses last bound, so a call with the same buffers rebinds nothing
};

class TensorRTEngine : public Engine {
 public:
  explicit TensorRTEngine(const Bundle& bundle) : bundle_(bundle) {
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw HostError("cannot create the TensorRT runtime");
    int64_t scratch = 0;
    for (const auto& [name, spec] : bundle.components) {
      const std::string blob = read_text(bundle.path(spec.file));
      Plan plan;
      plan.engine.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
      if (!plan.engine)
        throw HostError("cannot deserialize " + bundle.path(spec.file) +
                        ": built for another GPU or TensorRT version? rebuild with `dcrt build --res " + bundle.preset +
                        "`");
      scratch = std::max(scratch, plan.engine->getDeviceMemorySizeV2());  // re-queried, not trusted from the file
      plans_.emplace(name, std::move(plan));
    }
    // The graphs of one generation never run concurrently and are enqueued on one stream: one block serves all.
    if (cudaMalloc(&scratch_, static_cast<size_t>(std::max<int64_t>(scratch, 1))) != cudaSuccess)
      throw HostError("cannot allocate " + std::to_string(scratch) + " bytes of TensorRT scratch memory");
    for (auto& [name, plan] : plans_) {
      plan.context.reset(
          plan.engine->createExecutionContext(nvinfer1::ExecutionContextAllocationStrategy::kUSER_MANAGED));
      if (!plan.context) throw HostError("cannot create a TensorRT execution context for " + name);
      plan.context->setDeviceMemoryV2(scratch_, scratch);
    }
  }

  ~TensorRTEngine() override {
    plans_.clear();  // contexts before the memory they use
    cudaFree(scratch_);
  }

  Device device() const override { return Device::kCUDA; }

  void run(const std::string& component, const std::vector<const void*>& inputs, const std::vector<void*>& outputs,
           void* stream) override {
    const ComponentSpec& spec = bundle_.component(component);
    Plan& plan = plans_.at(component);
    std::vector<const void*> addresses(inputs.begin(), inputs.end());
    addresses.insert(addresses.end(), outputs.begin(), outputs.end());
    if (addresses != plan.bound) {  // static shapes: no setInputShape, only the addresses
      for (size_t k = 0; k < inputs.size(); ++k) bind(plan, spec.inputs[k].name, const_cast<void*>(inputs[k]));
      for (size_t k = 0; k < outputs.size(); ++k) bind(plan, spec.outputs[k].name, outputs[k]);
      plan.bound = addresses;
    }
    if (!plan.context->enqueueV3(static_cast<cudaStream_t>(stream)))
      throw HostError("TensorRT could not enqueue " + component);
  }

 private:
  static void bind(Plan& plan, const std::string& name, void* address) {
    if (!plan.context->setTensorAddress(name.c_str(), address))
      throw HostError("the plan has no tensor " + name + ": the manifest and the plan disagree, rebuild the bundle");
  }

  const Bundle& bundle_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::map<std::string, Plan> plans_;
  void* scratch_ = nullptr;
};

// docs/bundles.md step 1: a plan runs only on the GPU model and TensorRT version it was built with, so a
// mismatch is refused with the rebuild command before any plan is loaded.
void check_target(const Bundle& bundle) {
  const std::string version = std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
                              std::to_string(NV_TENSORRT_PATCH);
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess)
    throw HostError("no CUDA device for the TensorRT plans");
  const std::vector<int> cc{prop.major, prop.minor};
  std::string why;
  if (bundle.tensorrt_version != version) why = "TensorRT " + bundle.tensorrt_version + ", this host has " + version;
  else if (bundle.compute_capability != cc || bundle.gpu_name != prop.name)
    why = "a " + bundle.gpu_name + ", this GPU is a " + prop.name;
  if (!why.empty())
    throw HostError(bundle.dir + " was built for " + why + ": rebuild it with `dcrt build --res " + bundle.preset +
                    "`");
}

}  // namespace

std::unique_ptr<Engine> open_tensorrt_engine(const Bundle& bundle, Device device) {
  if (device != Device::kCUDA) throw HostError("TensorRT plans run on CUDA only: use --device cuda");
  check_target(bundle);
  return std::make_unique<TensorRTEngine>(bundle);
}

}  // namespace dcrt_host
