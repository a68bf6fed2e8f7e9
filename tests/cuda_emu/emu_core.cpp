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
/* KB_EMU_TSAN=1 (cmake -DKB_EMU_TSAN=ON): the kernels are built with
 * ThreadSanitizer, this file without it (the scheduler's own bookkeeping is
 * shared by all fibers and ordered by the scheduler, not by the kernels'
 * barriers); it tells TSan which fiber runs and the happens-before a GPU
 * gives, and nothing more (see tsan_* below). */
#ifndef KB_EMU_TSAN
#define KB_EMU_TSAN 0
#endif
#if KB_EMU_TSAN
#include <sanitizer/tsan_interface.h>
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
constexpr int kMasks = 4; /* TSan: distinct collective masks per warp (fiber::collectives) */

struct fiber {
    void *sp;              /* saved stack pointer while not running */
    unsigned char *stack;  /* its stack's lowest byte (kStack bytes) */
    void *asan_fake;       /* AddressSanitizer's fake stack while switched out */
    void *tsan;            /* ThreadSanitizer's fiber (KB_EMU_TSAN) */
    unsigned barriers;     /* TSan: __syncthreads passed, and collectives passed per mask slot: */
    unsigned char collectives[kMasks]; /* their parity picks the episode's sync object */
    thread_state ts;
    fiber_state state;
    unsigned mask;    /* WAIT_WARP: the lanes of the collective */
    const char *what; /* WAIT_WARP: which collective; WAIT_BLOCK: the __syncthreads' file:line */
};

constexpr size_t kStack = 256 * 1024;
constexpr size_t kGuard = 4096;          /* a PROT_NONE page below each stack: an overflow faults */
constexpr size_t kAsanTop = 16 * 1024;   /* ASan: the part of a reused stack to unpoison */
constexpr int kMaxThreads = 1024;
/* TSan: the blocks of a launch run in up to kSets "slots" (block_slot),
 * each slot with its own TSan fibers, stacks and block memory (an arena: the
 * warps' shuffle slots, sync objects, copies of the static __shared__
 * arrays, the dynamic shared memory). TSan thus takes the blocks of one slot
 * as ordered (the same fibers run them in turn, as one SM's resources run
 * blocks one after another; a GPU promises no such order, so races between
 * them go unseen) and blocks of different slots as concurrent: their
 * accesses to the same global memory without a launch between are races,
 * while each has its own shared memory and stacks, as on a GPU. At most
 * KB_EMU_TSAN_FIBERS fibers (TSan's cost grows with their number). A block's
 * threads start after every thread of the slot's block before (its done
 * object): they reuse its shared memory, which on a GPU would be their own. */
constexpr size_t kSlotBytes = kMaxThreads / 32 * 32 * 16;
constexpr size_t kTokenBytes = 4096;           /* start, 2 block barrier, done, 32 x kMasks x 2 warp objects */
constexpr size_t kStaticBytes = 64 * 1024;     /* 48 KiB of static arrays, each 128-byte aligned */
constexpr size_t kArenaFixed = kSlotBytes + kTokenBytes + kStaticBytes;
constexpr int kSets = 8;
constexpr int kTsanFibers = 2048;       /* the most KB_EMU_TSAN_FIBERS may allow */
constexpr int kTsanFibersDefault = 512; /* two slots of the project's largest blocks (256 threads) */
#if KB_EMU_TSAN
constexpr int kStacks = kTsanFibers; /* one per TSan fiber: a stack is only ever one fiber's */
#else
constexpr int kStacks = kMaxThreads;
#endif

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
    unsigned char slot_storage[kMaxThreads / 32][32 * 16];
    unsigned char *slots = &slot_storage[0][0]; /* the warps' shuffle slots (TSan: in the arena) */
    void *dyn = nullptr;
    long long optin = -1; /* the kernel's cudaFuncSetAttribute(MaxDynamicSharedMemorySize), -1: none */
    struct static_array {
        const void *decl; /* the function static */
        void *at;         /* this block's copy (the static itself, but under TSan) */
        size_t bytes;
    };
    std::vector<static_array> statics; /* static __shared__ arrays this block has reached */
    unsigned char *arenas = nullptr;   /* TSan: each slot's block memory, kArenaFixed + the dynamic part */
    unsigned char *arena = nullptr;    /* TSan: the running block's */
    size_t arena_bytes = 0, static_used = 0;
    int sets = 1;                      /* TSan: the launch's slots */
    unsigned masks[kMaxThreads / 32][kMasks]; /* TSan: each warp's collective masks, by slot */
    int nmasks[kMaxThreads / 32];
    void *sched_tsan = nullptr;   /* TSan: the scheduler's (the host thread's) fiber */
};

std::mutex g_launch_mutex;
block_run *g_run = nullptr;         /* the block being run, during a launch */
unsigned char *g_stacks = nullptr;  /* kStacks stacks, mapped once */
#if KB_EMU_TSAN
std::vector<void *> g_tsan_fibers;  /* TSan's fibers, made as needed, one per stack; reused by every launch */
#endif
std::map<const void *, int> g_smem_optin; /* cudaFuncSetAttribute(MaxDynamicSharedMemorySize) */
/* KB_EMU_ORDER=reverse: warps and lanes run last first, for the missing
 * barriers that the usual order happens to hide. */
const bool g_reverse = [] {
    const char *o = std::getenv("KB_EMU_ORDER");
    return o && std::strcmp(o, "reverse") == 0;
}();
#if KB_EMU_TSAN
/* KB_EMU_TSAN_FIBERS (32 to kTsanFibers, default kTsanFibersDefault): the
 * fibers a launch's slots may use. GCC's TSan gives every vector clock an
 * entry per fiber the process ever made, and each barrier costs a few of
 * those clocks: fewer fibers make big grids of small blocks faster (a
 * layernorm launch over 70000 rows of test_ops_cuda: over 10 minutes with
 * 2048, 3.5 with 512, 2 with 256), at the price of fewer slots. Two slots already see races between
 * blocks at any distance (block_slot). A block larger than the budget still
 * runs, in one slot (then no two of its launch's blocks are checked). */
const int g_tsan_fibers_max = [] {
    const char *v = std::getenv("KB_EMU_TSAN_FIBERS");
    if (!v) return kTsanFibersDefault;
    char *end;
    long n = std::strtol(v, &end, 10);
    if (end == v || *end || n < 32 || n > kTsanFibers) {
        std::fprintf(stderr, "kindbench CUDA emulator: KB_EMU_TSAN_FIBERS=%s is not a whole number from 32 to %d\n", v,
                     kTsanFibers);
        std::abort();
    }
    return (int)n;
}();
#endif

/* Fills p with NaN bits, as a new block's shared memory or a shuffle slot
 * starts. Under TSan out of its sight (rep stosb, not the intercepted
 * memset): the poison is the emulator's, not an access by the kernel's
 * threads, so it must not race with them (a static array is poisoned by the
 * first thread to reach it), and it saves TSan's shadow work per block. */
void poison(void *p, size_t n) {
#if KB_EMU_TSAN
    asm volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(0xff) : "memory");
#else
    std::memset(p, 0xff, n);
#endif
}

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
 * which stack is current, or it reports the fibers' frames as overflows),
 * and to ThreadSanitizer, without synchronising: the scheduler's order of
 * the fibers is not an order a GPU promises. */
void into_fiber(block_run &r, fiber &f) {
#if KB_EMU_ASAN
    __sanitizer_start_switch_fiber(&r.sched_fake, f.stack, kStack);
#endif
#if KB_EMU_TSAN
    __tsan_switch_to_fiber(f.tsan, __tsan_switch_to_fiber_no_sync);
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
#if KB_EMU_TSAN
    __tsan_switch_to_fiber(r.sched_tsan, __tsan_switch_to_fiber_no_sync);
#endif
    kb_emu_switch(&f.sp, r.sched_sp);
    arrived_in_fiber(r, f);
}

#if KB_EMU_TSAN
/* ThreadSanitizer's view of a launch: the happens-before a GPU gives and
 * nothing more. The host's work before the launch (and the scheduler's
 * filling of a block's memory) comes before each thread of the block (the
 * arena's start object); every thread comes before the host's work after
 * the grid and before the next block of its slot (its slot's done object,
 * which the host and that block's threads acquire: one object for the grid
 * would make each release merge every fiber's clock); a __syncthreads or a warp
 * collective orders what its participants did before it before what they do
 * after it: each releases the episode's sync object on arrival and acquires
 * it when the barrier opens. Episodes alternate between two objects, so that
 * a thread that has run on to the next episode (while others are still to
 * resume from this one) releases into the other object, not into the one
 * they are about to acquire. The sync objects lie in the block slot's arena,
 * used by that slot's fibers only. */
unsigned char *tsan_objects(block_run &r) { return r.arena + kSlotBytes; }
void *start_object(block_run &r) { return tsan_objects(r); }
void *barrier_object(block_run &r, const fiber &f) { return tsan_objects(r) + 1 + (f.barriers & 1); }
void *done_object(block_run &r) { return tsan_objects(r) + 3; }
/* The warp's next collective over `mask`, and the fiber's count of them. */
void *collective_object(block_run &r, fiber &f, unsigned mask, unsigned char **count);
#endif

/* A fiber's first frame: runs the thread, then hands back for good. */
[[noreturn]] void fiber_entry() {
    block_run *r = g_run;
    arrived_in_fiber(*r, *r->cur);
#if KB_EMU_TSAN
    __tsan_acquire(start_object(*r));
    __tsan_acquire(done_object(*r)); /* the slot's blocks before: they used the same shared memory */
#endif
    r->body(r->arg);
#if KB_EMU_TSAN
    __tsan_release(done_object(*r));
#endif
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

#if KB_EMU_TSAN
void *collective_object(block_run &r, fiber &f, unsigned mask, unsigned char **count) {
    int w = linear_tid(f.ts) / 32, m = 0;
    while (m < r.nmasks[w] && r.masks[w][m] != mask) m++;
    if (m == r.nmasks[w]) {
        if (m == kMasks)
            fail(where() + ": more than " + std::to_string(kMasks) +
                 " different collective masks in one warp (the ThreadSanitizer mode's limit)");
        r.masks[w][r.nmasks[w]++] = mask;
    }
    *count = &f.collectives[m];
    return tsan_objects(r) + 4 + (w * kMasks + m) * 2 + (**count & 1);
}

#endif

/* Thread i of a block in slot `set`: its stack (and under TSan its fiber) among the slots'. */
size_t slot_fiber(const block_run &r, int set, int i) { return (size_t)set * (size_t)r.nthreads + (size_t)i; }

#if KB_EMU_TSAN
/* A new block in slot `set`: its fibers, stacks and memory are the slot's. */
void tsan_new_block(block_run &r, int set) {
    r.arena = r.arenas + (size_t)set * r.arena_bytes;
    r.slots = r.arena;
    r.dyn = r.cfg->smem ? r.arena + kArenaFixed : nullptr;
    for (int i = 0; i < r.nthreads; i++) {
        size_t k = slot_fiber(r, set, i);
        while (g_tsan_fibers.size() <= k) g_tsan_fibers.push_back(__tsan_create_fiber(0));
        fiber &f = r.fibers[i];
        f.tsan = g_tsan_fibers[k];
        f.barriers = 0;
        std::memset(f.collectives, 0, sizeof f.collectives);
    }
    std::memset(r.nmasks, 0, sizeof r.nmasks);
    r.static_used = 0;
}
#endif

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

void run_block(block_run &r, uint3 bid, int set) {
    const config &c = *r.cfg;
#if KB_EMU_TSAN
    tsan_new_block(r, set);
#endif
    if (r.dyn) poison(r.dyn, c.smem); /* uninitialised shared memory reads as NaN, not as zeros */
    poison(r.slots, kSlotBytes);      /* a shuffle's slot of a lane that never wrote: NaN bits */
    r.statics.clear();                           /* and so do static arrays (shared_static) */
    for (int i = 0; i < r.nthreads; i++) {
        fiber &f = r.fibers[i];
        f.ts.bid = bid;
        f.ts.bdim = c.block;
        f.ts.gdim = c.grid;
        f.ts.tid = uint3{(unsigned)(i % c.block.x), (unsigned)(i / c.block.x % c.block.y),
                         (unsigned)(i / (c.block.x * c.block.y))};
        f.state = READY;
        f.stack = g_stacks + slot_fiber(r, set, i) * (kStack + kGuard) + kGuard;
        f.sp = fresh_stack(f.stack);
        f.asan_fake = nullptr;
    }
#if KB_EMU_TSAN
    __tsan_release(start_object(r)); /* after the fills: they come before every thread's first access */
#endif
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

/* The running fiber waits at a __syncthreads or a warp collective until the
 * scheduler opens it. Under TSan, what each participant did before comes
 * before what each does after: it releases the episode's sync object on
 * arrival and acquires it once the barrier opens (nullptr without TSan). */
static void wait_at(fiber &f, fiber_state state, const char *what, void *object) {
#if KB_EMU_TSAN
    __tsan_release(object);
#else
    (void)object;
#endif
    f.state = state;
    f.what = what;
    yield_to_scheduler();
#if KB_EMU_TSAN
    __tsan_acquire(object);
#endif
}

void sync_block(const char *site) {
    current()->tid; /* inside a kernel */
    fiber &f = *g_run->cur;
#if KB_EMU_TSAN
    wait_at(f, WAIT_BLOCK, site, barrier_object(*g_run, f));
    f.barriers++;
#else
    wait_at(f, WAIT_BLOCK, site, nullptr);
#endif
}

bool in_shared(const void *p, size_t bytes) {
    current();
    const unsigned char *q = (const unsigned char *)p, *dyn = (const unsigned char *)g_run->dyn;
    if (dyn && q >= dyn && q + bytes <= dyn + g_run->cfg->smem) return true;
    for (const auto &s : g_run->statics)
        if (q >= (const unsigned char *)s.at && q + bytes <= (const unsigned char *)s.at + s.bytes) return true;
    return false;
}

namespace {
/* Where the block keeps static array p (first reached now), NaN bits:
 * the array itself, or under TSan its copy in the block's arena. */
void *static_home(void *p, size_t bytes) {
#if KB_EMU_TSAN
    size_t at = (g_run->static_used + 127) & ~(size_t)127;
    if (at + bytes > kStaticBytes) fail(where() + ": static __shared__ arrays over the TSan mode's 64 KiB arena");
    g_run->static_used = at + bytes;
    p = g_run->arena + kSlotBytes + kTokenBytes + at; /* poisoned out of TSan's sight: no race with the slot's last block */
#endif
    poison(p, bytes);
    return p;
}

} // namespace

void *shared_static_at(void *p, size_t bytes) {
    current();
    size_t total = bytes;
    for (const auto &s : g_run->statics) {
        if (s.decl == p) return s.at;
        total += s.bytes;
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
    void *at = static_home(p, bytes);
    g_run->statics.push_back(block_run::static_array{p, at, bytes});
    return at;
}

void shared_static(void *p, size_t bytes) { shared_static_at(p, bytes); }

unsigned lane_id() { return (unsigned)linear_tid(*current()) & 31u; }

unsigned char *warp_slots() { return g_run->slots + linear_tid(*current()) / 32 * (32 * 16); }

void sync_warp(unsigned mask, const char *what) {
    if (!(mask >> lane_id() & 1u)) fail(where() + ": " + what + " with a mask that leaves out the calling lane");
    fiber &f = *g_run->cur;
    f.mask = mask;
#if KB_EMU_TSAN
    unsigned char *count;
    wait_at(f, WAIT_WARP, what, collective_object(*g_run, f, mask, &count));
    ++*count;
#else
    wait_at(f, WAIT_WARP, what, nullptr);
#endif
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

#if KB_EMU_TSAN
namespace {
/* The launch's block slots (as many as KB_EMU_TSAN_FIBERS allows, up to kSets and
 * the grid's blocks) and their arenas, and the host's fiber. */
void tsan_launch(block_run &r, unsigned long long nblocks) {
    r.sets = (int)std::min<unsigned long long>(nblocks, (unsigned long long)std::max(1, std::min(kSets, g_tsan_fibers_max / r.nthreads)));
    r.arena_bytes = kArenaFixed + ((r.cfg->smem + 4095) & ~(size_t)4095);
    size_t bytes = r.arena_bytes * (size_t)r.sets;
    void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fail(std::string(r.cfg->name) + ": no memory for shared memory");
    r.arenas = (unsigned char *)p;
    r.sched_tsan = __tsan_get_current_fiber();
}

/* After the grid: every thread's work comes before the host's next step.
 * Unmapped, the arenas' accesses and sync objects are forgotten by TSan. */
void tsan_launch_done(block_run &r) {
    for (int k = 0; k < r.sets; k++) {
        r.arena = r.arenas + (size_t)k * r.arena_bytes;
        __tsan_acquire(done_object(r));
    }
    munmap(r.arenas, r.arena_bytes * (size_t)r.sets);
}
} // namespace
#endif

/* Block b's slot, of `sets`: the sum of b's digits in base `sets`, modulo
 * `sets` (a generalised Thue-Morse sequence). With b % sets, blocks b and
 * b + sets would always share a slot, and a race between blocks that far
 * apart would never be seen; this sequence has no period, so for every
 * distance some pairs of blocks that far apart (in a grid large enough) lie
 * in different slots. */
int block_slot(unsigned long long b, int sets) {
    if (sets < 2) return 0;
    unsigned long long sum = 0;
    for (; b; b /= (unsigned)sets) sum += b % (unsigned)sets;
    return (int)(sum % (unsigned)sets);
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
        size_t span = (kStack + kGuard) * kStacks;
        void *p = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) fail(std::string(c.name) + ": no memory for the fibers' stacks");
        for (int i = 0; i < kStacks; i++) /* each stack's guard page lies below it */
            if (mprotect((unsigned char *)p + i * (kStack + kGuard), kGuard, PROT_NONE))
                fail(std::string(c.name) + ": cannot protect the fibers' guard pages");
        g_stacks = (unsigned char *)p;
    }
    block_run r;
    r.cfg = &c, r.body = body, r.arg = arg;
    r.nthreads = (int)threads;
    r.optin = opt == g_smem_optin.end() ? -1 : opt->second;
    r.fibers.resize((size_t)threads);
    unsigned long long nblocks = (unsigned long long)c.grid.x * c.grid.y * c.grid.z;
#if KB_EMU_TSAN
    tsan_launch(r, nblocks);
#else
    /* exactly the launch's bytes, so that tools like ASan see overruns */
    if (c.smem && posix_memalign(&r.dyn, 128, c.smem)) fail(std::string(c.name) + ": no memory for shared memory");
#endif
    g_run = &r;
    /* blocks one after another; with KB_EMU_ORDER=reverse the last first, so
     * that a block reading what a later block of the same launch writes (no
     * order between blocks on a GPU) reads poison instead of the value */
    for (unsigned long long j = 0; j < nblocks; j++) {
        unsigned long long b = g_reverse ? nblocks - 1 - j : j;
        run_block(r, uint3{(unsigned)(b % c.grid.x), (unsigned)(b / c.grid.x % c.grid.y),
                           (unsigned)(b / ((unsigned long long)c.grid.x * c.grid.y))}, block_slot(b, r.sets));
    }
    g_run = nullptr;
#if KB_EMU_TSAN
    tsan_launch_done(r);
#else
    std::free(r.dyn);
#endif
    count_launch();
}

} // namespace kb_emu
