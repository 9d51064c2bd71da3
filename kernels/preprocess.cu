// Input preprocessing (docs/sampling.md §4.1; docs/models.md §3.3; dcrt.images.load_image after the resize/crop, and
// dcrt.models.clip.clip_normalize: the normalisation of clip_pixels after its resize).
//
// image_u8_to_f32: images uint8 [N, H, W, 3] -> float32 [N, 3, H, W] in [-1, 1]:  v / 255 * 2 - 1
//   (a true division by 255, as PyTorch on the CPU does; torch on CUDA multiplies by 1/255 instead).
// clip_normalize_f32: float32 [N, 3, hw] in [-1, 1], already resized (224 x 224) -> CLIP input:
//   ((v + 1) / 2 - mean[c]) / std[c]. dst may alias src.
// Both: one thread per element of the float tensor, grid-stride.
#include "common.cuh"

extern "C" __global__ void image_u8_to_f32(float* dst, const unsigned char* images, int count, long long hw) {
    const long long total = static_cast<long long>(count) * 3 * hw;
    for (long long k = dcrt::thread_index(); k < total; k += dcrt::grid_stride()) {
        const long long p = k % hw, nc = k / hw;  // nc = n * 3 + c
        const long long n = nc / 3, c = nc - n * 3;
        const float v = static_cast<float>(images[(n * hw + p) * 3 + c]);
        dst[k] = __fsub_rn(__fmul_rn(__fdiv_rn(v, 255.0f), 2.0f), 1.0f);
    }
}

extern "C" __global__ void clip_normalize_f32(float* dst, const float* src, int count, long long hw, float mean0,
                                              float mean1, float mean2, float std0, float std1, float std2) {
    const long long total = static_cast<long long>(count) * 3 * hw;
    for (long long k = dcrt::thread_index(); k < total; k += dcrt::grid_stride()) {
        const int c = static_cast<int>((k / hw) % 3);
        const float mean = c == 0 ? mean0 : (c == 1 ? mean1 : mean2);
        const float std = c == 0 ? std0 : (c == 1 ? std1 : std2);
        dst[k] = __fdiv_rn(__fsub_rn(__fdiv_rn(__fadd_rn(src[k], 1.0f), 2.0f), mean), std);
    }
}
