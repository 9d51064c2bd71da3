// The DDIM schedule of one run, built from the bundle's schedule.safetensors exactly as
// dcrt.families.dynamicrafter.schedule.build_ddim_schedule and dcrt.families.dynamicrafter.timesteps.ddim_timesteps do (docs/sampling.md §4.4, 4.5):
// the same timesteps and the same eight float32 coefficient rows, in the same precisions.
#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include "tensor.h"

namespace dcrt_host {

// Row order of the coefficient table: dcrt.families.dynamicrafter.schedule.COEFFICIENT_ROWS = DCRT_DDIM_* in kernels/dcrt_kernels.h.
enum CoefRow { kEpsFromM, kEpsFromX, kX0FromX, kX0FromM, kX0Rescale, kSqrtAlphaPrev, kDirection, kSigma, kNumCoefs };

struct DDIMSchedule {
  std::vector<int64_t> timesteps;                   // ascending; position 0 is the least noisy step
  std::array<std::vector<float>, kNumCoefs> coefs;  // each [S]
  int num_steps() const { return static_cast<int>(timesteps.size()); }
  std::vector<float> table() const;  // [8, S] row-major, the kernels' layout
};

std::vector<int64_t> ddim_timesteps(int steps, const std::string& spacing, int num_train_steps);

// `v_model`: v-prediction (else eps). Dynamic rescale applies when the schedule holds `scale_arr`.
DDIMSchedule build_ddim_schedule(const std::map<std::string, Tensor>& buffers, bool v_model, int steps,
                                 const std::string& spacing, double eta);

}  // namespace dcrt_host
