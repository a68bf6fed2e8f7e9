/* The compute context: which device ops run on, CPU thread count, and (for
 * CUDA) the stream and library handles. Everything an op needs beyond its
 * arguments lives here; there is no global mutable state.
 *
 * Memory: kb_dev_alloc/kb_dev_free for persistent buffers (weights, grads),
 * kb_arena for scratch that is released in bulk (activations of one step). */
#ifndef KB_BACKEND_H
#define KB_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "nn/tensor.h"
#include "util/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kb_cuda_state kb_cuda_state; /* opaque; defined in nn/cuda_backend.cu */

/* Arithmetic of matrix products on CUDA; storage stays fp32 in every mode.
 *  FP32 (default): true fp32 products, comparable with the CPU reference.
 *  TF32: tensor cores on TF32 inputs (10-bit mantissas), fp32 accumulation.
 *  BF16: tensor cores on bf16 inputs (8-bit mantissas), fp32 accumulation:
 *        cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF, the arithmetic of PyTorch's
 *        torch.set_float32_matmul_precision("medium"); cuDNN convolutions use
 *        TF32 in this mode.
 * The CPU path computes in fp32 only. */
typedef enum { KB_MATMUL_FP32 = 0, KB_MATMUL_TF32, KB_MATMUL_BF16 } kb_matmul_precision;

/* How a backward op writes an input's gradient: added to it (KB_GRAD_ADD, the
 * llm.c convention: an input read by several ops sums their gradients there)
 * or written over it (KB_GRAD_SET: the op is the input's only reader, so the
 * buffer needs no zeroing first and is not read back, two passes fewer). */
typedef enum { KB_GRAD_ADD = 0, KB_GRAD_SET = 1 } kb_grad_mode;
/* Which attention models run (models/attention.h). AUTO: the fused bf16
 * kernels (nn/ops_attn.h) on CUDA in the BF16 mode, the exact unfused route
 * otherwise; KINDBENCH_FUSED_ATTENTION=0 in the environment makes AUTO mean
 * UNFUSED (to compare the two on a GPU). FUSED on the CPU runs the fused
 * route's plain reference: slow, for tests of the route's arithmetic. */
typedef enum { KB_ATTN_AUTO = 0, KB_ATTN_UNFUSED, KB_ATTN_FUSED } kb_attention_route;

/* How models store the activations around their linear layers (models/dit.c).
 * F32: fp32 throughout. BF16: the inputs of the attention and MLP linear
 * layers, qkv, the MLP's pre-activation and the output gradients flowing back
 * into those layers are stored as bf16 and go into native bf16 GEMMs (nn/ops.h
 * "*_x16"); the residual stream, statistics, weights and the optimiser stay
 * fp32; it needs the fused attention route. AUTO (the default): F32, or BF16 when
 * KINDBENCH_BF16_ACTS=1 is set as a CUDA context in the BF16 mode is made
 * (off by default until measured on a GPU). BF16 on the CPU runs the same
 * wiring with fp32 arithmetic on the bf16 values: for tests. */
typedef enum { KB_ACTS_AUTO = 0, KB_ACTS_F32, KB_ACTS_BF16 } kb_act_storage;

const char *kb_matmul_precision_name(kb_matmul_precision p);
/* "fp32" | "tf32" | "bf16". */
int kb_matmul_precision_parse(const char *s, kb_matmul_precision *out, kb_err *err);
/* Fails unless precision p can run on dev (anything but fp32 needs CUDA):
 * the commands call it with their options before any work, so that the
 * combination is a usage error; kb_ctx_init checks it again. */
int kb_matmul_precision_check(kb_device dev, kb_matmul_precision p, kb_err *err);

typedef struct {
    kb_device device;
    int threads;          /* CPU threads for the fast CPU path (fixed => bit-identical reruns) */
    int cuda_device;      /* CUDA ordinal */
    kb_matmul_precision matmul;
    kb_attention_route attention;
    kb_act_storage activations; /* F32 or BF16 (AUTO is resolved by kb_ctx_init) */
    kb_cuda_state *cuda;  /* NULL on CPU */
    struct kb_profile *prof; /* per-op times (nn/profile.h); NULL unless profiling */
} kb_ctx;

/* The most CPU threads a context takes (options, $KINDBENCH_THREADS, a
 * training record's thread count). */
#define KB_CTX_MAX_THREADS 4096

/* Options for kb_ctx_init; zero means "default". */
typedef struct {
    int threads;     /* default: $KINDBENCH_THREADS, else number of online CPUs */
    int cuda_device; /* default 0 */
    kb_matmul_precision matmul; /* default FP32; anything else needs CUDA */
    kb_attention_route attention; /* default AUTO (see kb_attention_route) */
    kb_act_storage activations;   /* default AUTO (see kb_act_storage) */
} kb_ctx_opts;

int kb_ctx_init(kb_ctx *ctx, kb_device dev, const kb_ctx_opts *opts, kb_err *err);
/* 1 when models on ctx store bf16 activations, given whether their attention
 * takes the fused route (the only one with bf16 inputs and outputs). */
int kb_act_bf16_wanted(const kb_ctx *ctx, int attn_fused);
void kb_ctx_free(kb_ctx *ctx);
/* Waits for queued device work; returns the first asynchronous error, if any. */
int kb_ctx_sync(kb_ctx *ctx, kb_err *err);

/* 1 if this binary was built with CUDA support. */
int kb_cuda_compiled(void);
/* Number of usable CUDA devices (0 when none or not compiled); never fails. */
int kb_cuda_device_count(void);
/* One-line description of CUDA device ordinal (name, memory, compute capability). */
int kb_cuda_describe(int ordinal, char *buf, size_t n, kb_err *err);

/* Device memory (256-byte aligned). On CPU this is aligned host memory. */
void *kb_dev_alloc(kb_ctx *ctx, size_t bytes, kb_err *err);
void kb_dev_free(kb_ctx *ctx, void *p);
int kb_dev_zero(kb_ctx *ctx, void *p, size_t bytes, kb_err *err);
/* Copies between host memory and ctx's device (plain memcpy on CPU). */
int kb_copy_to_dev(kb_ctx *ctx, void *dst_dev, const void *src_host, size_t bytes, kb_err *err);
int kb_copy_to_host(kb_ctx *ctx, void *dst_host, const void *src_dev, size_t bytes, kb_err *err);
int kb_copy_dev(kb_ctx *ctx, void *dst_dev, const void *src_dev, size_t bytes, kb_err *err);

/* A bump allocator over one device buffer: scratch that is freed in bulk by
 * resetting to a mark. Allocation failure names the request and the capacity. */
typedef struct {
    kb_ctx *ctx;
    uint8_t *base;
    size_t cap;
    size_t used;
    size_t peak;
} kb_arena;

int kb_arena_init(kb_arena *a, kb_ctx *ctx, size_t cap, kb_err *err);
void kb_arena_free(kb_arena *a);
void *kb_arena_alloc(kb_arena *a, size_t bytes, kb_err *err);
size_t kb_arena_mark(const kb_arena *a);
void kb_arena_reset(kb_arena *a, size_t mark);
/* A tensor allocated from the arena on the arena's device. */
int kb_arena_tensor(kb_arena *a, kb_dtype dt, int ndim, const int64_t *shape, kb_tensor *out, kb_err *err);

#ifdef __cplusplus
}
#endif

#endif
