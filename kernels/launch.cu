// Host launchers for C++ hosts (built by CMake only; the Python runtime launches the kernels itself
// with the same configuration, dcrt/runners/kernels.py).
#include "dcrt_kernels.h"

namespace {

unsigned blocks(long long n) {
    const long long b = (n + DCRT_BLOCK - 1) / DCRT_BLOCK;
    return static_cast<unsigned>(b < 1 ? 1 : (b > DCRT_MAX_BLOCKS ? DCRT_MAX_BLOCKS : b));
}

unsigned cfg_partials_count(long long n) {
    const long long p = (n + DCRT_CFG_CHUNK - 1) / DCRT_CFG_CHUNK;
    return static_cast<unsigned>(p < 1 ? 1 : (p > DCRT_CFG_MAX_PARTIALS ? DCRT_CFG_MAX_PARTIALS : p));
}

template <typename T, typename Partials, typename Combine>
cudaError_t cfg_combine(Partials partials_kernel, Combine combine_kernel, float* guided, const T* out, long long n,
                        int batch, int branches, double scale, double image_scale, double rescale, double* workspace,
                        cudaStream_t stream) {
    const bool rescaled = rescale > 0.0 && branches > 1;
    const unsigned p = cfg_partials_count(n);
    if (rescaled) {
        if (workspace == nullptr) return cudaErrorInvalidValue;
        partials_kernel<<<dim3(p, batch), DCRT_BLOCK, 0, stream>>>(out, workspace, n, batch, branches, (float)scale,
                                                                     (float)image_scale);
    }
    combine_kernel<<<dim3(blocks(n), batch), DCRT_BLOCK, 0, stream>>>(
        out, guided, rescaled ? workspace : nullptr, (int)p, n, batch, branches, (float)scale, (float)image_scale,
        (float)rescale, (float)(1.0 - rescale));
    return cudaGetLastError();
}

}  // namespace

extern "C" {

cudaError_t dcrt_launch_ddim_update_f32(float* x_prev, const float* x, const float* model_out, const float* noise,
                                        const float* coefs, int num_steps, const int* step, long long n,
                                        cudaStream_t stream) {
    ddim_update_f32<<<blocks(n), DCRT_BLOCK, 0, stream>>>(x_prev, x, model_out, noise, coefs, num_steps, step, n);
    return cudaGetLastError();
}

cudaError_t dcrt_launch_ddim_update_f16(float* x_prev, const float* x, const __half* model_out, const float* noise,
                                        const float* coefs, int num_steps, const int* step, long long n,
                                        cudaStream_t stream) {
    ddim_update_f16<<<blocks(n), DCRT_BLOCK, 0, stream>>>(x_prev, x, model_out, noise, coefs, num_steps, step, n);
    return cudaGetLastError();
}

cudaError_t dcrt_launch_ddim_update_bf16(float* x_prev, const float* x, const __nv_bfloat16* model_out,
                                         const float* noise, const float* coefs, int num_steps, const int* step,
                                         long long n, cudaStream_t stream) {
    ddim_update_bf16<<<blocks(n), DCRT_BLOCK, 0, stream>>>(x_prev, x, model_out, noise, coefs, num_steps, step, n);
    return cudaGetLastError();
}

cudaError_t dcrt_launch_ddim_timestep(long long* t, const long long* timesteps, const int* step, int count,
                                      cudaStream_t stream) {
    ddim_timestep<<<1, 32, 0, stream>>>(t, timesteps, step, count);
    return cudaGetLastError();
}

cudaError_t dcrt_launch_ddim_advance(int* step, cudaStream_t stream) {
    ddim_advance<<<1, 1, 0, stream>>>(step);
    return cudaGetLastError();
}

size_t dcrt_cfg_workspace_bytes(long long n, int batch) {
    return sizeof(double) * 4 * cfg_partials_count(n) * (size_t)batch;
}

cudaError_t dcrt_launch_cfg_combine_f32(float* guided, const float* out, long long n, int batch, int branches,
                                        double scale, double image_scale, double rescale, double* workspace,
                                        cudaStream_t stream) {
    return cfg_combine(cfg_partials_f32, cfg_combine_f32, guided, out, n, batch, branches, scale, image_scale, rescale,
                       workspace, stream);
}

cudaError_t dcrt_launch_cfg_combine_f16(float* guided, const __half* out, long long n, int batch, int branches,
                                        double scale, double image_scale, double rescale, double* workspace,
                                        cudaStream_t stream) {
    return cfg_combine(cfg_partials_f16, cfg_combine_f16, guided, out, n, batch, branches, scale, image_scale, rescale,
                       workspace, stream);
}

cudaError_t dcrt_launch_cfg_combine_bf16(float* guided, const __nv_bfloat16* out, long long n, int batch,
                                         int branches, double scale, double image_scale, double rescale,
                                         double* workspace, cudaStream_t stream) {
    return cfg_combine(cfg_partials_bf16, cfg_combine_bf16, guided, out, n, batch, branches, scale, image_scale,
                       rescale, workspace, stream);
}

cudaError_t dcrt_launch_frames_to_u8_f32(unsigned char* frames, const float* video, int count, long long hw,
                                         cudaStream_t stream) {
    frames_to_u8_f32<<<blocks(count * hw), DCRT_BLOCK, 0, stream>>>(frames, video, count, hw);
    return cudaGetLastError();
}

cudaError_t dcrt_launch_frames_to_u8_f16(unsigned char* frames, const __half* video, int count, long long hw,
                                         cudaStream_t stream) {
    frames_to_u8_f16<<<blocks(count * hw), DCRT_BLOCK, 0, stream>>>(frames, video, count, hw);
    return cudaGetLastError();
}

cudaError_t dcrt_launch_frames_to_u8_bf16(unsigned char* frames, const __nv_bfloat16* video, int count,
                                          long long hw, cudaStream_t stream) {
    frames_to_u8_bf16<<<blocks(count * hw), DCRT_BLOCK, 0, stream>>>(frames, video, count, hw);
    return cudaGetLastError();
}

cudaError_t dcrt_launch_image_u8_to_f32(float* dst, const unsigned char* images, int count, long long hw,
                                        cudaStream_t stream) {
    image_u8_to_f32<<<blocks(count * 3 * hw), DCRT_BLOCK, 0, stream>>>(dst, images, count, hw);
    return cudaGetLastError();
}

cudaError_t dcrt_launch_clip_normalize_f32(float* dst, const float* src, int count, long long hw, const float mean[3],
                                           const float std[3], cudaStream_t stream) {
    clip_normalize_f32<<<blocks(count * 3 * hw), DCRT_BLOCK, 0, stream>>>(dst, src, count, hw, mean[0], mean[1],
                                                                           mean[2], std[0], std[1], std[2]);
    return cudaGetLastError();
}

}  // extern "C"
