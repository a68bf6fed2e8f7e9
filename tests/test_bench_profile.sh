#!/usr/bin/env bash
# `kindbench bench train --profile`: after the timed steps it runs as many
# again with every op timed and prints one line per op. Checks, on the CPU
# with a tiny config: the run succeeds, the timed line still comes first, the
# table names the ops a DiT step must run (linear layers, attention GEMMs,
# softmax, LayerNorm with modulation, the MLP's linear+GELU, the loss, AdamW), counts them per
# step as the model implies (depth 2: 4 biased linears per block without GELU
# + 5 outside = 13 per step over 3 steps; fc1 is kb_gemm_bias_gelu, once per
# block), and the op time does not exceed the wall time.
set -u
source "$(dirname "$0")/test_train_common.sh"
workspace bench_profile
out=stdout.txt
if "$KB" bench train --depth 2 --width 32 --heads 2 --patch 4 --image 16 --batch 4 --steps 3 --warmup 1 --threads 1 \
     --profile > "$out" 2> stderr.txt; then
  ok "bench train --profile runs"
else bad "bench train --profile runs" "$(tail -n 2 stderr.txt)"; fi
first=$(grep -n '^kindbench train: .* steps/s' "$out" | head -1 | cut -d: -f1)
prof=$(grep -n '^profile: ' "$out" | head -1 | cut -d: -f1)
if [[ -n "$first" && -n "$prof" && $first -lt $prof ]]; then ok "timed figures before the profile"
else bad "timed figures before the profile" "$(head -n 5 "$out")"; fi
for op in kb_gemm_bias kb_gemm kb_gemm_batched kb_softmax_fwd kb_softmax_bwd kb_ln_modulate_fwd kb_ln_modulate_bwd kb_gemm_bias_gelu kb_gemm_dgelu \
          kb_diffusion_loss_dev kb_adamw_step; do
  if grep -q "^profile: $op " "$out"; then ok "profile lists $op"; else bad "profile lists $op" "missing"; fi
done
calls=$(awk '$1 == "profile:" && $2 == "kb_gemm_bias" { print $3 }' "$out")
# per step: 4 per block (adaLN, qkv, proj, fc2) x 2 blocks + x_embedder, t_embedder (2), final adaLN, final linear = 13
if [[ "$calls" == 39 ]]; then ok "kb_gemm_bias called 13 times per step"; else bad "kb_gemm_bias calls" "got '$calls', want 39"; fi
calls=$(awk '$1 == "profile:" && $2 == "kb_gemm_bias_gelu" { print $3 }' "$out")
if [[ "$calls" == 6 ]]; then ok "kb_gemm_bias_gelu called 2 times per step"; else bad "kb_gemm_bias_gelu calls" "got '$calls', want 6"; fi
if msg=$(awk '/^profile: [0-9]+ steps? on/ { for (i = 1; i <= NF; i++) { if ($i == "time") op = $(i + 1); if ($i == "wall") w = $(i + 1) }
               ok = op != "" && w != "" && op + 0 <= w + 0.05; print "op " op " ms, wall " w " ms"; exit !ok }
               END { if (op == "") exit 1 }' "$out"); then
  ok "op time within wall time ($msg)"
else bad "op time within wall time" "$msg"; fi
# option errors name the option
"$KB" bench train --depth x > /dev/null 2> stderr.txt
if grep -q "error: --depth: expected an integer .*got 'x'" stderr.txt; then ok "bad --depth value names --depth"
else bad "bad --depth value" "$(head -n 1 stderr.txt)"; fi
"$KB" bench train --steps 2 -zq > /dev/null 2> stderr.txt
if grep -q "error: bench train: unknown option or missing value: '-z'" stderr.txt && [[ $(grep -c . stderr.txt) -eq 2 ]]; then
  ok "unknown option named once, by kindbench"
else bad "unknown bench option" "$(cat stderr.txt)"; fi
finish
