// Fused DDIM update. Reference: dcrt.families.dynamicrafter.sampler.ddim_step (coefficients: dcrt.families.dynamicrafter.schedule.DDIMCoefficients),
// the same operations in the same order, each rounded as one float32 op (docs/sampling.md §4.6).
//
// coefs is a float32 table [DCRT_DDIM_NUM_COEFS, num_steps] on the device (DDIMSchedule.table()), row k
// holding one DDIMCoefficients field (order below) indexed by step position i. The position is read from the device
// (`*step`), so a captured CUDA graph replays the same launch for every step; ddim_advance moves it.
//
//   eps = eps_from_m[i] * m + eps_from_x[i] * x
//   x0  = (x0_from_x[i] * x - x0_from_m[i] * m) * x0_rescale[i]
//   x'  = sqrt_alpha_prev[i] * x0 + direction[i] * eps (+ sigma[i] * noise, when noise != nullptr)
//
// x, noise and x_prev are float32; m is float32, half or bfloat16 (converted exactly to float32). x_prev may
// alias x. A position outside [0, num_steps) writes NaN everywhere, so a bad counter cannot go unseen.
#include "common.cuh"  // DCRT_DDIM_* row indices: dcrt_kernels.h

namespace dcrt {

template <typename T>
__device__ void ddim_update(float* x_prev, const float* x, const T* m, const float* noise, const float* coefs,
                            int num_steps, const int* step, long long n) {
    const int i = *step;
    const bool valid = i >= 0 && i < num_steps;
    const int j = valid ? i : 0;
    const float em = coefs[DCRT_DDIM_EPS_FROM_M * num_steps + j];
    const float ex = coefs[DCRT_DDIM_EPS_FROM_X * num_steps + j];
    const float xx = coefs[DCRT_DDIM_X0_FROM_X * num_steps + j];
    const float xm = coefs[DCRT_DDIM_X0_FROM_M * num_steps + j];
    const float rs = coefs[DCRT_DDIM_X0_RESCALE * num_steps + j];
    const float ap = coefs[DCRT_DDIM_SQRT_ALPHA_PREV * num_steps + j];
    const float dir = coefs[DCRT_DDIM_DIRECTION * num_steps + j];
    const float sig = coefs[DCRT_DDIM_SIGMA * num_steps + j];
    for (long long k = thread_index(); k < n; k += grid_stride()) {
        if (!valid) {
            x_prev[k] = __int_as_float(0x7fc00000);
            continue;
        }
        const float xv = x[k], mv = to_float(m[k]);
        const float eps = __fadd_rn(__fmul_rn(em, mv), __fmul_rn(ex, xv));
        const float x0 = __fmul_rn(__fsub_rn(__fmul_rn(xx, xv), __fmul_rn(xm, mv)), rs);
        float out = __fadd_rn(__fmul_rn(ap, x0), __fmul_rn(dir, eps));
        if (noise != nullptr) out = __fadd_rn(out, __fmul_rn(sig, noise[k]));
        x_prev[k] = out;
    }
}

}  // namespace dcrt

extern "C" __global__ void ddim_update_f32(float* x_prev, const float* x, const float* model_out, const float* noise,
                                           const float* coefs, int num_steps, const int* step, long long n) {
    dcrt::ddim_update(x_prev, x, model_out, noise, coefs, num_steps, step, n);
}

extern "C" __global__ void ddim_update_f16(float* x_prev, const float* x, const __half* model_out, const float* noise,
                                           const float* coefs, int num_steps, const int* step, long long n) {
    dcrt::ddim_update(x_prev, x, model_out, noise, coefs, num_steps, step, n);
}

extern "C" __global__ void ddim_update_bf16(float* x_prev, const float* x, const __nv_bfloat16* model_out,
                                            const float* noise, const float* coefs, int num_steps, const int* step,
                                            long long n) {
    dcrt::ddim_update(x_prev, x, model_out, noise, coefs, num_steps, step, n);
}

// t[0..count) = timesteps[*step]: the UNet's timestep input for every guidance branch. One block.
extern "C" __global__ void ddim_timestep(long long* t, const long long* timesteps, const int* step, int count) {
    for (int k = threadIdx.x; k < count; k += blockDim.x) t[k] = timesteps[*step];
}

// *step -= 1 (steps run from num_steps - 1 down to 0). One thread; launch it after the step's last reader.
extern "C" __global__ void ddim_advance(int* step) {
    if (threadIdx.x == 0 && blockIdx.x == 0) *step -= 1;
}
