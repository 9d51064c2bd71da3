// Image-to-video on a bundle, as dcrt.families.dynamicrafter.pipeline.Pipeline.generate does it for `animate`: conditioning,
// the DDIM loop with guidance, decoding. Noise comes from the caller (a file written by `dcrt noise`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bundle.h"
#include "engine.h"
#include "step.h"

namespace dcrt_host {

struct HostInputs {
  Tensor rgb;     // uint8 [H, W, 3] at the bundle's size
  Tensor tokens;  // int64 [2, L]: the prompt's CLIP ids, then the empty prompt's (`dcrt tokenize`)
  Tensor noise;   // float32 [1 + S, 1, 4, T, h, w] (eta > 0) or [1, ...]: x_T, then each step's draw, in draw order
};

struct Video {
  int frames = 0, height = 0, width = 0;
  std::vector<uint8_t> rgb;  // [frames, height, width, 3]
};

// Throws HostError (one line, with the fix) when the inputs do not fit the bundle.
Video generate(const Bundle& bundle, Engine& engine, const SamplingOptions& options, const HostInputs& inputs);

}  // namespace dcrt_host
