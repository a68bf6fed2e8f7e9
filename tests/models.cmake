# DiT engine: layer ops, optimiser ops, the DiT against PyTorch.
kb_c_test(test_ops_dit SOURCES test_ops_dit.c)
kb_py_fixture(dit_ref ref/dit_ref.py)
kb_c_test(test_dit_torch SOURCES test_dit_torch.c FIXTURES dit_ref)
kb_c_test(test_ops_dit_cuda SOURCES test_ops_dit_cuda.c)
