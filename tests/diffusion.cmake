# Gaussian diffusion (models/diffusion*.c) against an independent PyTorch
# re-implementation of ADM/DiT's formulas (tests/ref/diffusion_ref.py).
kb_py_fixture(diffusion_fixtures ref/diffusion_ref.py)
kb_c_test(test_diffusion SOURCES test_diffusion.c FIXTURES diffusion_fixtures)
# The loss on the GPU against the CPU reference; skipped (77) without a GPU.
kb_c_test(test_diffusion_cuda SOURCES test_diffusion_cuda.c LABELS cuda)
