// Image-to-video on a bundle, as dcrt.families.dynamicrafter.pipeline.Pipeline.generate does it (animate, interpolate,
// loop): conditioning, the DDIM loop with guidance, decoding, from token ids and noise (api.cpp makes them from the
// prompt and the seed).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <dcrt/host.h>

#include "bundle.h"
#include "engine.h"
#include "step.h"

namespace dcrt_host {

struct HostInputs {
  std::string mode;           // "animate", "interpolate" or "loop"
  std::vector<Tensor> images;  // uint8 [H, W, 3] at the bundle's size (resize_and_crop): interpolate's two, else one
  Tensor tokens;  // int64 [2, L]: the prompt's CLIP ids, then the empty prompt's
  Tensor noise;   // float32 [1 + S, 1, 4, T, h, w] (eta > 0) or [1, ...]: x_T, then each step's draw, in draw order
};

using Video = dcrt::Video;

// Throws HostError (one line, with the fix) when the inputs do not fit the bundle.
Video generate(const Bundle& bundle, Engine& engine, const SamplingOptions& options, const HostInputs& inputs);

}  // namespace dcrt_host
