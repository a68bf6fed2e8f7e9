# CUDA backend: the ops on the GPU against the C reference, and the CUDA
# context. Builds in every configuration; exits 77 (skipped) without CUDA or
# without a visible GPU.
kb_c_test(test_ops_cuda SOURCES test_ops_cuda.c LABELS cuda)

# The runner that takes the CUDA checks a few at a time (tests/lanes.sh: the
# emulator's run_checks.sh and bench/device_check.sh): concurrency bound,
# reports, exit statuses, thread shares.
kb_sh_test(test_lanes test_lanes.sh)
