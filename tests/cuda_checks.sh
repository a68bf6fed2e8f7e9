# The CUDA checks, one list for a GPU (bench/device_check.sh) and for the
# CPU emulator (tests/cuda_emu/run_checks.sh). Sourced, not run. The caller
# defines `run_test NAME COMMAND...` (runs one check, records its result)
# and sets:
#   KB_BIN        a directory with kindbench, sample_mkckpt and the test programs
#   KB_WORK       a scratch directory (the train runs' workspaces)
#   KB_PY         the Python with torch and PIL (fixtures, test_sample_cuda.sh, test_eval_cuda.sh)
#   KB_FIXTURES, KB_SOURCE_DIR exported, the fixtures made (tests/ref/*.py)
# Most important first (a GPU call may run out of time part way).
kb_cuda_checks() {
  run_test ops_cuda "$KB_BIN/test_ops_cuda"
  run_test ops_dit_cuda "$KB_BIN/test_ops_dit_cuda"
  run_test diffusion_cuda "$KB_BIN/test_diffusion_cuda"
  run_test dit_torch_cuda_fp32 "$KB_BIN/test_dit_torch" cuda fp32
  run_test dit_torch_cuda_bf16 "$KB_BIN/test_dit_torch" cuda bf16
  run_test attn_fused_cuda "$KB_BIN/test_attn_fused" cuda
  run_test inception_cuda "$KB_BIN/test_inception_cuda"
  run_test eval_cuda env KINDBENCH="$KB_BIN/kindbench" KB_PYTHON="$KB_PY" bash "$KB_SOURCE_DIR/tests/test_eval_cuda.sh"
  run_test ops_x16_cuda "$KB_BIN/test_ops_x16" cuda
  run_test ops_x16_cuda_ltgelu env KINDBENCH_LT_GELU=1 "$KB_BIN/test_ops_x16" cuda
  run_test ops_x16_cuda_ltbgrad env KINDBENCH_LT_BGRAD=1 "$KB_BIN/test_ops_x16" cuda
  # the bf16 DiT again with the unfused attention (GEMMs + softmax), to compare the two routes
  run_test dit_torch_bf16_unfused env KINDBENCH_FUSED_ATTENTION=0 "$KB_BIN/test_dit_torch" cuda bf16
  run_test dit_torch_bf16_staged env KINDBENCH_BF16_OPERANDS=1 KINDBENCH_LT_GELU=1 KINDBENCH_LT_BGRAD=1 \
    "$KB_BIN/test_dit_torch" cuda bf16
  # the DiT with bf16 activations (nn/ops.h *_x16) against PyTorch, with the bf16 tolerances
  run_test dit_torch_bf16_acts "$KB_BIN/test_dit_torch" cuda bf16 fused bf16acts
  run_test dit_torch_bf16_acts_epilogues env KINDBENCH_LT_GELU=1 KINDBENCH_LT_BGRAD=1 \
    "$KB_BIN/test_dit_torch" cuda bf16 fused bf16acts
  run_test dit_layout_cuda "$KB_BIN/test_dit_layout" cuda
  run_test sample_cuda env KINDBENCH="$KB_BIN/kindbench" KB_PYTHON="$KB_PY" KB_MKCKPT="$KB_BIN/sample_mkckpt" \
    bash "$KB_SOURCE_DIR/tests/test_sample_cuda.sh"
  # kindbench train on the GPU: same seed twice, and 5 steps + --resume = 10 steps, bit for bit; then
  # with bf16 activations, and with the experimental cuBLASLt epilogues (deterministic too? a
  # condition for making them the default)
  local resume=(KINDBENCH="$KB_BIN/kindbench" KB_PYTHON="$KB_PY" bash "$KB_SOURCE_DIR/tests/test_train_resume.sh")
  local mode
  for mode in fp32 bf16; do
    mkdir -p "$KB_WORK/resume_$mode"
    run_test "train_resume_cuda_$mode" env -C "$KB_WORK/resume_$mode" \
      KB_TRAIN_DEVICE_ARGS="--device cuda --precision $mode" "${resume[@]}"
  done
  mkdir -p "$KB_WORK/resume_acts" "$KB_WORK/resume_epis" "$KB_WORK/resume_acts_epis"
  run_test train_resume_cuda_bf16_acts env -C "$KB_WORK/resume_acts" KINDBENCH_BF16_ACTS=1 \
    KB_TRAIN_DEVICE_ARGS="--device cuda --precision bf16" "${resume[@]}"
  run_test train_resume_cuda_bf16_epilogues env -C "$KB_WORK/resume_epis" KINDBENCH_LT_GELU=1 KINDBENCH_LT_BGRAD=1 \
    KB_TRAIN_DEVICE_ARGS="--device cuda --precision bf16" "${resume[@]}"
  run_test train_resume_cuda_bf16_acts_epilogues env -C "$KB_WORK/resume_acts_epis" KINDBENCH_BF16_ACTS=1 \
    KINDBENCH_LT_GELU=1 KINDBENCH_LT_BGRAD=1 KB_TRAIN_DEVICE_ARGS="--device cuda --precision bf16" "${resume[@]}"
}
