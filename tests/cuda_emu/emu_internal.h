/* Shared by the emulator's translation units (not by emulated code). */
#ifndef KB_CUDA_EMU_INTERNAL_H
#define KB_CUDA_EMU_INTERNAL_H

#include "kb_cuda_emu.h"

/* The kernel-side names are not the runtime's business (and cudaDeviceProp has a warpSize). */
#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim
#undef warpSize

#include <cstddef>

namespace kb_emu {

/* The emulated device's limits (an H100/H200's). */
struct emu_limits {
    int max_threads;        /* per block */
    size_t smem_default;    /* dynamic shared memory without an opt-in */
    size_t smem_optin_max;  /* the most a kernel may opt in to */
    int sm_count;
    int cc_major, cc_minor;
    size_t global_mem;
};
const emu_limits &limits();

/* cudaFuncSetAttribute(MaxDynamicSharedMemorySize). */
void set_smem_optin(const void *kernel, int bytes);
/* A failed launch: kept for cudaGetLastError/cudaPeekAtLastError. */
void set_launch_error(cudaError_t e, const char *kernel);
void count_launch();

/* 1 when p .. p+bytes lies inside one cudaMalloc'd block. */
bool is_device_range(const void *p, size_t bytes);

} // namespace kb_emu

#endif
