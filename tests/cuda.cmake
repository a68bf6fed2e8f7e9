# CUDA backend: the ops on the GPU against the C reference, and the CUDA
# context. Builds in every configuration; exits 77 (skipped) without CUDA or
# without a visible GPU.
kb_c_test(test_ops_cuda SOURCES test_ops_cuda.c LABELS cuda)
