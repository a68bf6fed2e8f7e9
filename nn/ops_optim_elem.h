/* The per-element arithmetic of the optimiser ops, shared by the reference,
 * the fast CPU path and the CUDA kernels so they agree bit for bit. */
#ifndef KB_OPS_OPTIM_ELEM_H
#define KB_OPS_OPTIM_ELEM_H

#include "nn/ops_optim.h"
#include "nn/rng.h" /* KB_HD and the KB_F* non-contracting arithmetic */

KB_HD void kb_adamw_elem(float *p, float g, float *m, float *v, const kb_adamw_scalars *s) {
    float pm = KB_FMUL(*p, s->decay_mul);
    float mm = KB_FADD(KB_FMUL(*m, s->beta1), KB_FMUL(g, s->one_minus_beta1));
    float vv = KB_FADD(KB_FMUL(*v, s->beta2), KB_FMUL(KB_FMUL(s->one_minus_beta2, g), g));
    float denom = KB_FADD(KB_FDIV(KB_FSQRT(vv), s->bc2_sqrt), s->eps);
    *p = KB_FADD(pm, KB_FDIV(KB_FMUL(s->neg_step_size, mm), denom));
    *m = mm;
    *v = vv;
}

KB_HD float kb_ema_elem(float ema, float p, float decay, float one_minus_decay) {
    return KB_FADD(KB_FMUL(ema, decay), KB_FMUL(one_minus_decay, p));
}

#endif
