# Ops (nn/ops.c, nn/ops_ref.c, nn/ops_cpu.c), the Philox RNG, safetensors I/O
# and the tensor/arena/context basics.
#   test_ops_cpu      fast CPU path vs the CPU reference, 1/2/3 threads, reruns
#   test_ops_torch    CPU reference vs PyTorch (fixture: tests/ref/ops_ref.py)
#   test_rng          Philox4x32-10 known answers, distribution checks
#   test_safetensors  round trips, files from Python, corrupt files
#   test_tensor       arena, tensor views and checks, contexts
kb_py_fixture(ops_torch ref/ops_ref.py)
kb_py_fixture(st_sample ref/st.py write-sample ${KB_FIXTURES}/st_sample.safetensors)

kb_c_test(test_ops_cpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ops_cpu.c)
kb_c_test(test_ops_torch SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ops_torch.c FIXTURES ops_torch)
kb_c_test(test_rng SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_rng.c)
kb_c_test(test_safetensors SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_safetensors.c FIXTURES st_sample)
kb_c_test(test_tensor SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_tensor.c)

# Op micro-benchmark (not a test): build/bench_ops [threads]
add_executable(bench_ops ${CMAKE_CURRENT_LIST_DIR}/../bench/bench_ops.c)
target_link_libraries(bench_ops PRIVATE kbcore)
# Fused attention timing (not a test): bench/bench_attn.sh runs it beside PyTorch's SDPA on a GPU.
add_executable(bench_attn ${CMAKE_CURRENT_LIST_DIR}/../bench/bench_attn.c)
target_link_libraries(bench_attn PRIVATE kbcore)
