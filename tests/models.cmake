# DiT engine: layer ops, optimiser ops, the DiT against PyTorch.
kb_c_test(test_ops_dit SOURCES test_ops_dit.c)
kb_py_fixture(dit_ref ref/dit_ref.py)
kb_c_test(test_dit_torch SOURCES test_dit_torch.c FIXTURES dit_ref)
kb_c_test(test_ops_dit_cuda SOURCES test_ops_dit_cuda.c LABELS cuda)
# The same comparison on the GPU, in fp32 and with bf16 GEMMs (tolerances in
# the test); exit 77 (skipped) without a CUDA build or device.
foreach(prec fp32 bf16)
  add_test(NAME test_dit_torch_cuda_${prec} COMMAND test_dit_torch cuda ${prec}
           WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(test_dit_torch_cuda_${prec} PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "${KB_TEST_ENV}"
                       FIXTURES_REQUIRED dit_ref LABELS cuda)
endforeach()
# Forward-only activation layout (models without gradients) vs the one kept for backward.
kb_c_test(test_dit_layout SOURCES test_dit_layout.c)
add_test(NAME test_dit_layout_cuda COMMAND test_dit_layout cuda WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_dit_layout_cuda PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "${KB_TEST_ENV}" LABELS cuda)
