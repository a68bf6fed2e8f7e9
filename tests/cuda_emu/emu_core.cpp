/* The emulator's kernel execution (see kb_cuda_emu.h): blocks one after
 * another, each thread of a block a fiber that runs until it waits at a
 * barrier or a warp collective or returns. The scheduler runs one warp at a
 * time as far as it can go (lanes in order, collectives released as they
 * complete), then the next, and releases __syncthreads when every live
 * thread waits at it: the most skew between warps and lanes that the
 * barriers allow, so that a missing barrier reads stale data. The device is process-wide state, as a GPU is; launches
 * are serialised by a mutex. */
#include "emu_internal.h"

#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define KB_EMU_ASAN 1
#else
#define KB_EMU_ASAN 0
#endif

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

/* kb_emu_switch(&save, to): saves the callee-saved registers and the stack
 * pointer into *save and resumes the context whose stack pointer is `to`
 * (no signal mask: glibc's swapcontext makes a system call per switch,
 * which made the emulator ten times slower). x86-64 System V only. */
#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif
extern "C" void kb_emu_switch(void **save, void *to);
asm(R"(
    .text
    .globl kb_emu_switch
    .type kb_emu_switch, @function
kb_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size kb_emu_switch, .-kb_emu_switch
)");

namespace kb_emu {
namespace {

enum fiber_state { READY, WAIT_BLOCK, WAIT_WARP, DONE };

struct fiber {
    void *sp;              /* saved stack pointer while not running */
    unsigned char *stack;  /* its stack's lowest byte (kStack bytes) */
    void *asan_fake;       /* AddressSanitizer's fake stack while switched out */
    thread_state ts;
    fiber_state state;
    unsigned mask;    /* WAIT_WARP: the lanes of the collective */
    const char *what; /* WAIT_WARP: which collective; WAIT_BLOCK: the __syncthreads' file:line */
};

constexpr size_t kStack = 256 * 1024;
constexpr size_t kGuard = 4096;          /* a PROT_NONE page below each stack: an overflow faults */
constexpr size_t kAsanTop = 16 * 1024;   /* ASan: the part of a reused stack to unpoison */
constexpr int kMaxThreads = 1024;

struct block_run {
    const config *cfg;
    void (*body)(void *);
    void *arg;
    std::vector<fiber> fibers;
    int nthreads = 0;
    fiber *cur = nullptr;
    void *sched_sp = nullptr; /* the scheduler's, while a fiber runs */
    void *sched_fake = nullptr;             /* AddressSanitizer: the scheduler's fake stack, */
    const void *sched_bottom = nullptr;     /* and its stack, learnt from the first switch */
    size_t sched_size = 0;
    unsigned char slots[kMaxThreads / 32][32 * 16];
    void *dyn = nullptr;
    long long optin = -1; /* the kernel's cudaFuncSetAttribute(MaxDynamicSharedMemorySize), -1: none */
    std::vector<std::pair<void *, size_t>> statics; /* static __shared__ arrays this block has reached */
};

std::mutex g_launch_mutex;
block_run *g_run = nullptr;         /* the block being run, during a launch */
unsigned char *g_stacks = nullptr;  /* kMaxThreads stacks, mapped once */
std::map<const void *, int> g_smem_optin; /* cudaFuncSetAttribute(MaxDynamicSharedMemorySize) */
/* KB_EMU_ORDER=reverse: warps and lanes run last first, for the missing
 * barriers that the usual order happens to hide. */
const bool g_reverse = [] {
    const char *o = std::getenv("KB_EMU_ORDER");
    return o && std::strcmp(o, "reverse") == 0;
}();

[[noreturn]] void fail(const std::string &msg) {
    std::fprintf(stderr, "kindbench CUDA emulator: %s\n", msg.c_str());
    std::abort();
}

std::string where() {
    if (!g_run || !g_run->cur) return "outside a kernel";
    const thread_state &t = g_run->cur->ts;
    char buf[256];
    std::snprintf(buf, sizeof buf, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u)", g_run->cfg->name, t.bid.x, t.bid.y,
                  t.bid.z, t.tid.x, t.tid.y, t.tid.z);
    return buf;
}

/* Stack switches, told to AddressSanitizer when it is on (it must know
 * which stack is current, or it reports the fibers' frames as overflows). */
void into_fiber(block_run &r, fiber &f) {
#if KB_EMU_ASAN
    __sanitizer_start_switch_fiber(&r.sched_fake, f.stack, kStack);
#endif
    kb_emu_switch(&r.sched_sp, f.sp);
#if KB_EMU_ASAN
    __sanitizer_finish_switch_fiber(r.sched_fake, nullptr, nullptr);
#endif
}

/* In a fiber, once it runs: where the scheduler's stack is (for ASan). */
void arrived_in_fiber(block_run &r, fiber &f) {
#if KB_EMU_ASAN
    __sanitizer_finish_switch_fiber(f.asan_fake, &r.sched_bottom, &r.sched_size);
#else
    (void)r, (void)f;
#endif
}

/* The running fiber gives the CPU back to the scheduler (for good when done). */
void out_of_fiber(block_run &r, fiber &f, bool done) {
#if KB_EMU_ASAN
    __sanitizer_start_switch_fiber(done ? nullptr : &f.asan_fake, r.sched_bottom, r.sched_size);
#else
    (void)done;
#endif
    kb_emu_switch(&f.sp, r.sched_sp);
    arrived_in_fiber(r, f);
}

/* A fiber's first frame: runs the thread, then hands back for good. */
[[noreturn]] void fiber_entry() {
    block_run *r = g_run;
    arrived_in_fiber(*r, *r->cur);
    r->body(r->arg);
    r->cur->state = DONE;
    out_of_fiber(*r, *r->cur, true);
    std::abort(); /* a finished fiber is never resumed */
}

/* A fresh stack that kb_emu_switch "returns" into fiber_entry from: six
 * zeroed callee-saved registers, then fiber_entry's address, then a fake
 * return address, so that fiber_entry starts with the ABI's alignment. */
void *fresh_stack(unsigned char *base) {
#if KB_EMU_ASAN
    /* redzones of the frames a finished fiber never popped (fiber_entry's, out_of_fiber's), near the top */
    __asan_unpoison_memory_region(base + kStack - kAsanTop, kAsanTop);
#endif
    uintptr_t top = ((uintptr_t)(base + kStack)) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;                   /* fiber_entry's return address: none */
    *--sp = (void *)&fiber_entry;      /* where kb_emu_switch's ret goes */
    for (int i = 0; i < 6; i++) *--sp = nullptr;
    return sp;
}

void yield_to_scheduler() { out_of_fiber(*g_run, *g_run->cur, false); }

int linear_tid(const thread_state &t) { return (int)(t.tid.x + t.bdim.x * (t.tid.y + t.bdim.y * t.tid.z)); }

/* Two waiting fibers are at the same collective or barrier (what: a literal
 * name or a file:line, compared by address first). */
bool same_what(const fiber &a, const fiber &b) { return a.what == b.what || std::strcmp(a.what, b.what) == 0; }

/* Releases warp w when all the lanes in its collective's mask wait at it. */
bool release_warp(block_run &r, int w) {
    fiber *first = nullptr;
    for (int l = 0; l < 32 && w * 32 + l < r.nthreads; l++)
        if (r.fibers[w * 32 + l].state == WAIT_WARP) { first = &r.fibers[w * 32 + l]; break; }
    if (!first) return false;
    for (int l = 0; l < 32; l++) {
        if (!(first->mask >> l & 1u)) continue;
        if (w * 32 + l >= r.nthreads)
            r.cur = first, fail(where() + ": a warp collective names lane " + std::to_string(l) + ", which the block lacks");
        fiber &f = r.fibers[w * 32 + l];
        if (f.state == DONE) {
            r.cur = first;
            fail(where() + ": warp collective " + first->what + " waits for a lane that has returned");
        }
        if (f.state != WAIT_WARP) return false;
        if (f.mask != first->mask || !same_what(f, *first)) {
            r.cur = &f;
            fail(where() + ": diverged warp: this lane is at " + f.what + ", another at " + first->what);
        }
    }
    for (int l = 0; l < 32; l++)
        if (first->mask >> l & 1u) r.fibers[w * 32 + l].state = READY;
    return true;
}

/* Runs warp w's lanes, in lane order, each until it waits or returns, and
 * its collectives as they complete, until every lane waits at the block
 * barrier (or has returned, or is stuck). Warps thus run ahead of one
 * another as far as a GPU may let them: a missing __syncthreads shows. */
void run_warp(block_run &r, int w) {
    int begin = w * 32, n = std::min(r.nthreads, begin + 32) - begin;
    for (bool ran = true; ran;) {
        ran = false;
        for (int j = 0; j < n; j++) {
            int i = begin + (g_reverse ? n - 1 - j : j);
            if (r.fibers[i].state != READY) continue;
            r.cur = &r.fibers[i];
            into_fiber(r, *r.cur);
            ran = true;
        }
        r.cur = nullptr;
        ran = release_warp(r, w) || ran;
    }
}

/* Every thread waiting at the block barrier waits at the same __syncthreads
 * (different ones mean a barrier in code that diverged within the block). */
void check_one_barrier(block_run &r) {
    const fiber *first = nullptr;
    for (int i = 0; i < r.nthreads; i++) {
        const fiber &f = r.fibers[i];
        if (f.state != WAIT_BLOCK) continue;
        if (!first) first = &f;
        else if (!same_what(f, *first)) {
            r.cur = &r.fibers[i];
            fail(where() + ": threads of one block wait at different __syncthreads: this one at " + f.what +
                 ", another at " + first->what);
        }
    }
}

void run_block(block_run &r, uint3 bid) {
    const config &c = *r.cfg;
    if (r.dyn) std::memset(r.dyn, 0xff, c.smem); /* uninitialised shared memory reads as NaN, not as zeros */
    std::memset(r.slots, 0xff, sizeof r.slots);  /* a shuffle's slot of a lane that never wrote: NaN bits */
    r.statics.clear();                           /* and so do static arrays (shared_static) */
    for (int i = 0; i < r.nthreads; i++) {
        fiber &f = r.fibers[i];
        f.ts.bid = bid;
        f.ts.bdim = c.block;
        f.ts.gdim = c.grid;
        f.ts.tid = uint3{(unsigned)(i % c.block.x), (unsigned)(i / c.block.x % c.block.y),
                         (unsigned)(i / (c.block.x * c.block.y))};
        f.state = READY;
        f.stack = g_stacks + (size_t)i * (kStack + kGuard) + kGuard;
        f.sp = fresh_stack(f.stack);
        f.asan_fake = nullptr;
    }
    int nwarps = (r.nthreads + 31) / 32;
    for (;;) {
        for (int w = 0; w < nwarps; w++) run_warp(r, g_reverse ? nwarps - 1 - w : w);
        int live = 0, at_block = 0;
        for (int i = 0; i < r.nthreads; i++) {
            live += r.fibers[i].state != DONE;
            at_block += r.fibers[i].state == WAIT_BLOCK;
        }
        if (live == 0) return;
        if (at_block < live) {
            for (int i = 0; i < r.nthreads; i++)
                if (r.fibers[i].state == WAIT_WARP) { r.cur = &r.fibers[i]; break; }
            fail(where() + ": deadlock: some threads wait at __syncthreads, others at " +
                 (r.cur ? r.cur->what : "a warp collective"));
        }
        check_one_barrier(r);
        for (int i = 0; i < r.nthreads; i++) /* returned threads count as arrived (sm_70 and later) */
            if (r.fibers[i].state == WAIT_BLOCK) r.fibers[i].state = READY;
    }
}

} // namespace

thread_state *current() {
    if (!g_run || !g_run->cur) fail("threadIdx, blockIdx or a barrier used outside a kernel");
    return &g_run->cur->ts;
}

void *dynamic_smem() {
    current();
    return g_run->dyn;
}

void sync_block(const char *site) {
    current()->tid; /* inside a kernel */
    g_run->cur->state = WAIT_BLOCK;
    g_run->cur->what = site;
    yield_to_scheduler();
}

bool in_shared(const void *p, size_t bytes) {
    current();
    const unsigned char *q = (const unsigned char *)p, *dyn = (const unsigned char *)g_run->dyn;
    if (dyn && q >= dyn && q + bytes <= dyn + g_run->cfg->smem) return true;
    for (const auto &s : g_run->statics)
        if (q >= (const unsigned char *)s.first && q + bytes <= (const unsigned char *)s.first + s.second) return true;
    return false;
}

void shared_static(void *p, size_t bytes) {
    current();
    size_t total = bytes;
    for (const auto &s : g_run->statics) {
        if (s.first == p) return;
        total += s.second;
    }
    /* the first thread of the block to reach the declaration: none has used it yet */
    if (total > limits().smem_default)
        fail(where() + ": static __shared__ arrays of " + std::to_string(total) + " bytes (over 48 KiB)");
    /* Without the opt-in a block has 48 KiB in all, static and dynamic together (the
     * function's maxDynamicSharedSizeBytes is 48 KiB less its static arrays; a GPU
     * refuses a launch over it); with it, the opted-in size plus the static arrays
     * must fit the device's per-block maximum (cudaFuncSetAttribute refuses more). */
    size_t dyn = g_run->cfg->smem;
    if (g_run->optin < 0 && total + dyn > limits().smem_default)
        fail(where() + ": static (" + std::to_string(total) + " bytes) and dynamic (" + std::to_string(dyn) +
             " bytes) shared memory together over 48 KiB without cudaFuncSetAttribute("
             "MaxDynamicSharedMemorySize) (a GPU refuses the launch)");
    if (g_run->optin >= 0 && (size_t)g_run->optin > dyn) dyn = (size_t)g_run->optin;
    if (total + dyn > limits().smem_optin_max)
        fail(where() + ": static and dynamic shared memory together over the device's " +
             std::to_string(limits().smem_optin_max) + " bytes");
    std::memset(p, 0xff, bytes);
    g_run->statics.emplace_back(p, bytes);
}

unsigned lane_id() { return (unsigned)linear_tid(*current()) & 31u; }

unsigned char *warp_slots() { return g_run->slots[linear_tid(*current()) / 32]; }

void sync_warp(unsigned mask, const char *what) {
    if (!(mask >> lane_id() & 1u)) fail(where() + ": " + what + " with a mask that leaves out the calling lane");
    g_run->cur->state = WAIT_WARP;
    g_run->cur->mask = mask;
    g_run->cur->what = what;
    yield_to_scheduler();
}

void trap(const char *what) { fail(where() + ": " + what); }

void launch_bounds(unsigned max, const char *kernel) {
    const thread_state *t = current();
    unsigned n = t->bdim.x * t->bdim.y * t->bdim.z;
    if (n > max)
        fail(where() + ": launched with " + std::to_string(n) + " threads per block, over " + kernel +
             "'s __launch_bounds__ of " + std::to_string(max) + " (a GPU refuses the launch)");
}

void check_kernel_pointer(const config &c, int index, const void *p) {
    if (p && !is_device_range(p, 1))
        fail(std::string("kernel ") + c.name + ": argument " + std::to_string(index) + " (" +
             std::to_string((uintptr_t)p) + ") is a pointer outside device memory (a host pointer?)");
}

void set_smem_optin(const void *kernel, int bytes) {
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    g_smem_optin[kernel] = bytes;
}

void run_grid(const config &c, const void *kernel, void (*body)(void *), void *arg) {
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    const emu_limits &lim = limits();
    long long threads = (long long)c.block.x * c.block.y * c.block.z;
    if (threads < 1 || threads > lim.max_threads || c.block.z > 64 || c.grid.x < 1 || c.grid.y < 1 || c.grid.z < 1 ||
        c.grid.x > 2147483647u || c.grid.y > 65535 || c.grid.z > 65535)
        return set_launch_error(cudaErrorInvalidConfiguration, c.name);
    auto opt = g_smem_optin.find(kernel);
    size_t allowed = opt == g_smem_optin.end() ? lim.smem_default : (size_t)opt->second;
    if (c.smem > allowed) return set_launch_error(cudaErrorInvalidValue, c.name);
    if (!g_stacks) {
        size_t span = (kStack + kGuard) * kMaxThreads;
        void *p = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) fail(std::string(c.name) + ": no memory for the fibers' stacks");
        for (int i = 0; i < kMaxThreads; i++) /* each stack's guard page lies below it */
            if (mprotect((unsigned char *)p + i * (kStack + kGuard), kGuard, PROT_NONE))
                fail(std::string(c.name) + ": cannot protect the fibers' guard pages");
        g_stacks = (unsigned char *)p;
    }
    block_run r;
    r.cfg = &c, r.body = body, r.arg = arg;
    r.nthreads = (int)threads;
    r.optin = opt == g_smem_optin.end() ? -1 : opt->second;
    r.fibers.resize((size_t)threads);
    /* exactly the launch's bytes, so that tools like ASan see overruns */
    if (c.smem && posix_memalign(&r.dyn, 128, c.smem)) fail(std::string(c.name) + ": no memory for shared memory");
    g_run = &r;
    /* blocks one after another; with KB_EMU_ORDER=reverse the last first, so
     * that a block reading what a later block of the same launch writes (no
     * order between blocks on a GPU) reads poison instead of the value */
    unsigned long long nblocks = (unsigned long long)c.grid.x * c.grid.y * c.grid.z;
    for (unsigned long long j = 0; j < nblocks; j++) {
        unsigned long long b = g_reverse ? nblocks - 1 - j : j;
        run_block(r, uint3{(unsigned)(b % c.grid.x), (unsigned)(b / c.grid.x % c.grid.y),
                           (unsigned)(b / ((unsigned long long)c.grid.x * c.grid.y))});
    }
    g_run = nullptr;
    std::free(r.dyn);
    count_launch();
}

} // namespace kb_emu
