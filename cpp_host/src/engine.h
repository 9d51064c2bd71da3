// The host's engine interface: run one named graph of a bundle on caller-owned buffers. Two
// implementations: AOTInductor packages (engine_aoti.cpp, libtorch) and TensorRT plans
// (engine_tensorrt.cpp, built only where TensorRT's headers are found).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bundle.h"
#include "device.h"

namespace dcrt_host {

class Engine {
 public:
  virtual ~Engine() = default;
  // Where the buffers passed to run() must live.
  virtual Device device() const = 0;
  // Runs `component` with inputs and outputs in the manifest's positional order and shapes (the caller
  // checks them against bundle.component(name)). Enqueues on `stream` (CUDA) and may return before the
  // outputs are written; they are valid after the stream is synchronised.
  virtual void run(const std::string& component, const std::vector<const void*>& inputs,
                   const std::vector<void*>& outputs, void* stream) = 0;
};

// The engine for the bundle's kind on `device` ("cpu" or "cuda"); throws HostError when this build
// lacks it (e.g. TensorRT without its headers) or the bundle was compiled for another device.
std::unique_ptr<Engine> open_engine(const Bundle& bundle, Device device);

std::unique_ptr<Engine> open_aoti_engine(const Bundle& bundle, Device device);
std::unique_ptr<Engine> open_tensorrt_engine(const Bundle& bundle, Device device);

}  // namespace dcrt_host
