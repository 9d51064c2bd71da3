// The CPU implementation of one denoising step after the UNet: the guidance combine
// (dcrt.families.dynamicrafter.sampler.combine_guidance) and the DDIM update (dcrt.families.dynamicrafter.sampler.ddim_step). Each float32 operation is
// the reference's, in its order and rounding (as kernels/guidance.cu and kernels/ddim.cu are on CUDA).
#pragma once

#include <cstdint>

#include "schedule.h"

namespace dcrt_host {

// The values come from the bundle's manifest ("sampling", the preset's defaults) or the command line.
struct Guidance {
  double guidance_scale = 0.0;
  double image_guidance_scale = 0.0;  // used only with 3 branches (multi-condition guidance)
  double guidance_rescale = 0.0;
  bool image_guidance = false;
  // 1 (scale 1: no guidance), 2 (conditional, unconditional) or 3 (+ image-only): dcrt.families.dynamicrafter.sampler.Guidance.branches
  int branches() const { return guidance_scale == 1.0 ? 1 : (image_guidance ? 3 : 2); }
};

// guided[batch * n] from out[branches * batch * n] (branch-major, as the UNet batch is stacked).
void combine_guidance(float* guided, const float* out, int64_t n, int batch, const Guidance& guidance);

// x_prev[n] = DDIM update of x[n] with model output m[n] at step position i; noise may be null (eta = 0).
// x_prev may alias x.
void ddim_step(float* x_prev, const float* x, const float* m, const float* noise, const DDIMSchedule& schedule,
               int i, int64_t n);

}  // namespace dcrt_host
