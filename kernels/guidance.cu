// Classifier-free guidance combine with guidance rescale (docs/sampling.md §4.6 steps 1-2, 4.7;
// dcrt.families.dynamicrafter.sampler.combine_guidance).
//
// out holds `branches` stacked blocks of `batch` samples of n elements each, branch order
// conditional, unconditional[, image-only] (float32, half or bfloat16); guided is float32 [batch, n]:
//   2 branches: g = u + scale * (c - u)
//   3 branches: g = u + image_scale * (i - u) + scale * (c - i)
//   1 branch:   g = c
// Guidance rescale (rescale > 0) needs the unbiased (N-1) std of c and of g per sample, a reduction
// done in two launches with no atomics (deterministic, graph-capturable, no buffer to clear):
//   cfg_partials: grid (P, batch): block p of sample b writes the double sums
//                 {sum c, sum c^2, sum g, sum g^2} of its slice to partials[(b * P + p) * 4 ..].
//   cfg_combine:  grid (any, batch): each block folds the P partials of its sample into
//                 ratio = float(std c) / float(std g), then writes
//                 g' = rescale * g * ratio + keep * g   (keep = 1 - rescale, rounded by the host).
// Without rescale, launch cfg_combine alone with partials = nullptr.
#include "common.cuh"

namespace dcrt {

__device__ __forceinline__ float guide(float c, float u, float im, int branches, float scale, float image_scale) {
    if (branches == 2) return __fadd_rn(u, __fmul_rn(scale, __fsub_rn(c, u)));
    if (branches == 3)
        return __fadd_rn(__fadd_rn(u, __fmul_rn(image_scale, __fsub_rn(im, u))), __fmul_rn(scale, __fsub_rn(c, im)));
    return c;
}

// Conditional and guided values of element k of sample b.
template <typename T>
__device__ __forceinline__ void load_branches(const T* out, long long n, int batch, int b, long long k, int branches,
                                              float scale, float image_scale, float& c, float& g) {
    const long long stride = static_cast<long long>(batch) * n;  // one branch
    const long long at = static_cast<long long>(b) * n + k;
    c = to_float(out[at]);
    const float u = branches > 1 ? to_float(out[stride + at]) : 0.0f;
    const float im = branches > 2 ? to_float(out[2 * stride + at]) : 0.0f;
    g = guide(c, u, im, branches, scale, image_scale);
}

template <typename T>
__device__ void cfg_partials(const T* out, double* partials, long long n, int batch, int branches, float scale,
                             float image_scale) {
    const int b = blockIdx.y;
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    for (long long k = thread_index(); k < n; k += grid_stride()) {
        float c, g;
        load_branches(out, n, batch, b, k, branches, scale, image_scale, c, g);
        s[0] += c;
        s[1] += static_cast<double>(c) * c;
        s[2] += g;
        s[3] += static_cast<double>(g) * g;
    }
    block_sum(s);
    if (threadIdx.x == 0)
        for (int q = 0; q < 4; ++q) partials[(static_cast<long long>(b) * gridDim.x + blockIdx.x) * 4 + q] = s[q];
}

template <typename T>
__device__ void cfg_combine(const T* out, float* guided, const double* partials, int num_partials, long long n,
                            int batch, int branches, float scale, float image_scale, float rescale, float keep) {
    const int b = blockIdx.y;
    __shared__ float ratio;
    if (partials != nullptr) {  // uniform over the grid: every thread takes the same branch
        double s[4] = {0.0, 0.0, 0.0, 0.0};
        for (int p = threadIdx.x; p < num_partials; p += blockDim.x)
            for (int q = 0; q < 4; ++q) s[q] += partials[(static_cast<long long>(b) * num_partials + p) * 4 + q];
        block_sum(s);
        if (threadIdx.x == 0) {
            const double var_c = (s[1] - s[0] * s[0] / n) / (n - 1);
            const double var_g = (s[3] - s[2] * s[2] / n) / (n - 1);
            ratio = __fdiv_rn(static_cast<float>(sqrt(fmax(var_c, 0.0))), static_cast<float>(sqrt(fmax(var_g, 0.0))));
        }
        __syncthreads();
    }
    for (long long k = thread_index(); k < n; k += grid_stride()) {
        float c, g;
        load_branches(out, n, batch, b, k, branches, scale, image_scale, c, g);
        if (partials != nullptr) g = __fadd_rn(__fmul_rn(__fmul_rn(rescale, g), ratio), __fmul_rn(keep, g));
        guided[static_cast<long long>(b) * n + k] = g;
    }
}

}  // namespace dcrt

extern "C" __global__ void cfg_partials_f32(const float* out, double* partials, long long n, int batch, int branches,
                                            float scale, float image_scale) {
    dcrt::cfg_partials(out, partials, n, batch, branches, scale, image_scale);
}

extern "C" __global__ void cfg_partials_f16(const __half* out, double* partials, long long n, int batch, int branches,
                                            float scale, float image_scale) {
    dcrt::cfg_partials(out, partials, n, batch, branches, scale, image_scale);
}

extern "C" __global__ void cfg_combine_f32(const float* out, float* guided, const double* partials, int num_partials,
                                           long long n, int batch, int branches, float scale, float image_scale,
                                           float rescale, float keep) {
    dcrt::cfg_combine(out, guided, partials, num_partials, n, batch, branches, scale, image_scale, rescale, keep);
}

extern "C" __global__ void cfg_combine_f16(const __half* out, float* guided, const double* partials, int num_partials,
                                           long long n, int batch, int branches, float scale, float image_scale,
                                           float rescale, float keep) {
    dcrt::cfg_combine(out, guided, partials, num_partials, n, batch, branches, scale, image_scale, rescale, keep);
}

extern "C" __global__ void cfg_partials_bf16(const __nv_bfloat16* out, double* partials, long long n, int batch,
                                             int branches, float scale, float image_scale) {
    dcrt::cfg_partials(out, partials, n, batch, branches, scale, image_scale);
}

extern "C" __global__ void cfg_combine_bf16(const __nv_bfloat16* out, float* guided, const double* partials,
                                            int num_partials, long long n, int batch, int branches, float scale,
                                            float image_scale, float rescale, float keep) {
    dcrt::cfg_combine(out, guided, partials, num_partials, n, batch, branches, scale, image_scale, rescale, keep);
}
