"""The lean runners and their CUDA kernels: one sampler step captured once as a CUDA graph and replayed (ddim for
DynamiCrafter, edm for Stable Video Diffusion), the kernels they launch (kernels) and their NVRTC compilation and
cache (kernel_compile)."""
