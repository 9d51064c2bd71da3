// dcrt kernels: declarations for C++ hosts (kernels/README.md).
//
// Every .cu includes this header, so a declaration that drifts from its definition fails to compile.
// Under nvcc the __global__ kernels can be launched directly; any C++ compiler can call the
// dcrt_launch_* functions (launch.cu), which pick the launch configuration the Python runtime uses.
#ifndef DCRT_KERNELS_H
#define DCRT_KERNELS_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>

// Row order of the DDIM coefficient table coefs[DCRT_DDIM_NUM_COEFS][num_steps] (dcrt.families.dynamicrafter.schedule.DDIMSchedule).
#define DCRT_DDIM_EPS_FROM_M 0
#define DCRT_DDIM_EPS_FROM_X 1
#define DCRT_DDIM_X0_FROM_X 2
#define DCRT_DDIM_X0_FROM_M 3
#define DCRT_DDIM_X0_RESCALE 4
#define DCRT_DDIM_SQRT_ALPHA_PREV 5
#define DCRT_DDIM_DIRECTION 6
#define DCRT_DDIM_SIGMA 7
#define DCRT_DDIM_NUM_COEFS 8

#define DCRT_BLOCK 256         // threads per block, every kernel
#define DCRT_MAX_BLOCKS 65536  // grid-stride kernels use min(ceil(n / DCRT_BLOCK), DCRT_MAX_BLOCKS) blocks
// cfg_partials runs P = min(ceil(n / DCRT_CFG_CHUNK), DCRT_CFG_MAX_PARTIALS) blocks per sample.
#define DCRT_CFG_CHUNK 2048
#define DCRT_CFG_MAX_PARTIALS 128

#ifdef __CUDACC__
extern "C" {
__global__ void ddim_update_f32(float* x_prev, const float* x, const float* model_out, const float* noise,
                                const float* coefs, int num_steps, const int* step, long long n);
__global__ void ddim_update_f16(float* x_prev, const float* x, const __half* model_out, const float* noise,
                                const float* coefs, int num_steps, const int* step, long long n);
__global__ void ddim_update_bf16(float* x_prev, const float* x, const __nv_bfloat16* model_out, const float* noise,
                                 const float* coefs, int num_steps, const int* step, long long n);
__global__ void ddim_timestep(long long* t, const long long* timesteps, const int* step, int count);
__global__ void ddim_advance(int* step);
__global__ void cfg_partials_f32(const float* out, double* partials, long long n, int batch, int branches, float scale,
                                 float image_scale);
__global__ void cfg_partials_f16(const __half* out, double* partials, long long n, int batch, int branches,
                                 float scale, float image_scale);
__global__ void cfg_partials_bf16(const __nv_bfloat16* out, double* partials, long long n, int batch, int branches,
                                  float scale, float image_scale);
__global__ void cfg_combine_f32(const float* out, float* guided, const double* partials, int num_partials, long long n,
                                int batch, int branches, float scale, float image_scale, float rescale, float keep);
__global__ void cfg_combine_f16(const __half* out, float* guided, const double* partials, int num_partials,
                                long long n, int batch, int branches, float scale, float image_scale, float rescale,
                                float keep);
__global__ void cfg_combine_bf16(const __nv_bfloat16* out, float* guided, const double* partials, int num_partials,
                                 long long n, int batch, int branches, float scale, float image_scale, float rescale,
                                 float keep);
__global__ void frames_to_u8_f32(unsigned char* frames, const float* video, int count, long long hw);
__global__ void frames_to_u8_f16(unsigned char* frames, const __half* video, int count, long long hw);
__global__ void frames_to_u8_bf16(unsigned char* frames, const __nv_bfloat16* video, int count, long long hw);
__global__ void image_u8_to_f32(float* dst, const unsigned char* images, int count, long long hw);
__global__ void clip_normalize_f32(float* dst, const float* src, int count, long long hw, float mean0, float mean1,
                                   float mean2, float std0, float std1, float std2);
}
#endif  // __CUDACC__

#ifndef __CUDACC_RTC__
#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
// All return the launch's error (cudaGetLastError) and enqueue on `stream`; nothing synchronises.
cudaError_t dcrt_launch_ddim_update_f32(float* x_prev, const float* x, const float* model_out, const float* noise,
                                        const float* coefs, int num_steps, const int* step, long long n,
                                        cudaStream_t stream);
cudaError_t dcrt_launch_ddim_update_f16(float* x_prev, const float* x, const __half* model_out, const float* noise,
                                        const float* coefs, int num_steps, const int* step, long long n,
                                        cudaStream_t stream);
cudaError_t dcrt_launch_ddim_update_bf16(float* x_prev, const float* x, const __nv_bfloat16* model_out,
                                         const float* noise, const float* coefs, int num_steps, const int* step,
                                         long long n, cudaStream_t stream);
cudaError_t dcrt_launch_ddim_timestep(long long* t, const long long* timesteps, const int* step, int count,
                                      cudaStream_t stream);
cudaError_t dcrt_launch_ddim_advance(int* step, cudaStream_t stream);
// Bytes of the double workspace the rescaled combine needs for `batch` samples of n elements.
size_t dcrt_cfg_workspace_bytes(long long n, int batch);
// guided[batch, n] from out[branches * batch, n]; rescale > 0 needs `workspace` (else it may be NULL).
cudaError_t dcrt_launch_cfg_combine_f32(float* guided, const float* out, long long n, int batch, int branches,
                                        double scale, double image_scale, double rescale, double* workspace,
                                        cudaStream_t stream);
cudaError_t dcrt_launch_cfg_combine_f16(float* guided, const __half* out, long long n, int batch, int branches,
                                        double scale, double image_scale, double rescale, double* workspace,
                                        cudaStream_t stream);
cudaError_t dcrt_launch_cfg_combine_bf16(float* guided, const __nv_bfloat16* out, long long n, int batch,
                                         int branches, double scale, double image_scale, double rescale,
                                         double* workspace, cudaStream_t stream);
cudaError_t dcrt_launch_frames_to_u8_f32(unsigned char* frames, const float* video, int count, long long hw,
                                         cudaStream_t stream);
cudaError_t dcrt_launch_frames_to_u8_f16(unsigned char* frames, const __half* video, int count, long long hw,
                                         cudaStream_t stream);
cudaError_t dcrt_launch_frames_to_u8_bf16(unsigned char* frames, const __nv_bfloat16* video, int count,
                                          long long hw, cudaStream_t stream);
cudaError_t dcrt_launch_image_u8_to_f32(float* dst, const unsigned char* images, int count, long long hw,
                                        cudaStream_t stream);
cudaError_t dcrt_launch_clip_normalize_f32(float* dst, const float* src, int count, long long hw, const float mean[3],
                                           const float std[3], cudaStream_t stream);
#ifdef __cplusplus
}
#endif
#endif  // __CUDACC_RTC__

#endif  // DCRT_KERNELS_H
