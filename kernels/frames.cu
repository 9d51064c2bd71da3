// Decoder output -> video frames (docs/sampling.md §4.9; dcrt.images.to_uint8_frames).
//
// video [T, 3, H, W] float32, half or bfloat16 -> frames uint8 [T, H, W, 3]:
//   y = (clamp(v, -1, 1) + 1) / 2 * 255, truncated toward zero (each op rounded as float32).
// One thread per output pixel (3 bytes), grid-stride over T * H * W.
#include "common.cuh"

namespace dcrt {

template <typename T>
__device__ void frames_to_u8(unsigned char* frames, const T* video, int count, long long hw) {
    const long long pixels = static_cast<long long>(count) * hw;
    for (long long k = thread_index(); k < pixels; k += grid_stride()) {
        const long long t = k / hw, p = k - t * hw;
        for (int c = 0; c < 3; ++c) {
            float v = to_float(video[(t * 3 + c) * hw + p]);
            v = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);  // NaN passes through, as torch.clamp
            const float y = __fmul_rn(__fdiv_rn(__fadd_rn(v, 1.0f), 2.0f), 255.0f);
            frames[k * 3 + c] = static_cast<unsigned char>(__float2uint_rz(y));
        }
    }
}

}  // namespace dcrt

extern "C" __global__ void frames_to_u8_f32(unsigned char* frames, const float* video, int count, long long hw) {
    dcrt::frames_to_u8(frames, video, count, hw);
}

extern "C" __global__ void frames_to_u8_f16(unsigned char* frames, const __half* video, int count, long long hw) {
    dcrt::frames_to_u8(frames, video, count, hw);
}

extern "C" __global__ void frames_to_u8_bf16(unsigned char* frames, const __nv_bfloat16* video, int count,
                                             long long hw) {
    dcrt::frames_to_u8(frames, video, count, hw);
}
