// Shared device helpers for the dcrt kernels (included by every .cu; no host code).
//
// Arithmetic uses the explicit round-to-nearest intrinsics (__fadd_rn, __fmul_rn, ...) so the
// compiler never contracts a*b+c into an FMA: every operation rounds exactly as PyTorch's separate
// elementwise float32 ops do, which makes the kernels bit-comparable with dcrt's torch references.
#ifndef DCRT_COMMON_CUH
#define DCRT_COMMON_CUH

#include "dcrt_kernels.h"  // also brings cuda_fp16.h and cuda_bf16.h

namespace dcrt {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ long long thread_index() {
    return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long grid_stride() {
    return static_cast<long long>(gridDim.x) * blockDim.x;
}

// Sum of K doubles over the block (blockDim.x a multiple of 32, at most 1024); the result is valid
// in thread 0. All threads of the block must call it.
template <int K>
__device__ void block_sum(double (&v)[K]) {
    __shared__ double partial[32][K];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int k = 0; k < K; ++k)
        for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], off);
    if (lane == 0)
        for (int k = 0; k < K; ++k) partial[warp][k] = v[k];
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x >> 5;
        for (int k = 0; k < K; ++k) {
            v[k] = lane < warps ? partial[lane][k] : 0.0;
            for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], off);
        }
    }
    __syncthreads();  // `partial` may be reused by a later call
}

}  // namespace dcrt

#endif  // DCRT_COMMON_CUH
