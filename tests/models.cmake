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
# The fused attention route's wiring through the model (its bf16 reference on
# the CPU, fp32 GEMMs) against PyTorch, with the bf16 tolerances.
add_test(NAME test_dit_torch_cpu_fused COMMAND test_dit_torch cpu fp32 fused WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_dit_torch_cpu_fused PROPERTIES ENVIRONMENT "${KB_TEST_ENV}" FIXTURES_REQUIRED dit_ref)
# Forward-only activation layout (models without gradients) vs the one kept for backward.
kb_c_test(test_dit_layout SOURCES test_dit_layout.c)
add_test(NAME test_dit_layout_cuda COMMAND test_dit_layout cuda WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_dit_layout_cuda PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "${KB_TEST_ENV}" LABELS cuda)
# Fused bf16 attention (the BF16 mode's route on CUDA): its reference against
# the exact fp32 attention here, the CUDA kernels against both on a GPU.
kb_c_test(test_attn_fused SOURCES test_attn_fused.c ARGS cpu)
add_test(NAME test_attn_fused_cuda COMMAND test_attn_fused cuda WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_attn_fused_cuda PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "${KB_TEST_ENV}" LABELS cuda)
# linear-layer products on bf16 activations (nn/ops.h "*_x16"): CPU path in CI, CUDA on a GPU
kb_c_test(test_ops_x16 SOURCES test_ops_x16.c ARGS cpu)
add_test(NAME test_ops_x16_cuda COMMAND test_ops_x16 cuda WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_ops_x16_cuda PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "${KB_TEST_ENV}" LABELS cuda)
# the DiT wired for bf16 activations (fused attention route), on the CPU, against PyTorch
add_test(NAME test_dit_torch_cpu_bf16acts COMMAND test_dit_torch cpu fp32 fused bf16acts
         WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_dit_torch_cpu_bf16acts PROPERTIES ENVIRONMENT "${KB_TEST_ENV}" FIXTURES_REQUIRED dit_ref)
