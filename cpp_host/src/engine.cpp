#include "engine.h"

#include "errors.h"

namespace dcrt_host {

#ifndef DCRT_HOST_TENSORRT
std::unique_ptr<Engine> open_tensorrt_engine(const Bundle& bundle, Device) {
  throw HostError(bundle.dir + " is a TensorRT bundle, and this dcrt_host was built without TensorRT (CMake did "
                  "not find NvInfer.h: pass -DTENSORRT_ROOT=<dir>)");
}
#endif

std::unique_ptr<Engine> open_engine(const Bundle& bundle, Device device) {
  if (bundle.engine_kind == "tensorrt") return open_tensorrt_engine(bundle, device);
  return open_aoti_engine(bundle, device);
}

}  // namespace dcrt_host
