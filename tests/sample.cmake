# Sampler: against PyTorch (DiT's CFG sample loop over the dit_ref model and
# two more), quantisation, batch independence; the npz writer/reader against
# numpy; the `kindbench sample` CLI end to end and its bad inputs.
kb_py_fixture(sample_ref ref/sample_ref.py)
set_tests_properties(fixture_sample_ref PROPERTIES FIXTURES_REQUIRED dit_ref)
kb_c_test(test_sample SOURCES test_sample.c FIXTURES dit_ref sample_ref)
kb_c_test(test_sample_npy SOURCES test_sample_npy.c)
# an npz write of 512 MiB interrupted (SIGINT) and failing (RLIMIT_FSIZE): prompt exit, nothing left behind
kb_c_test(test_npz_interrupt SOURCES test_npz_interrupt.c)
# helper for the CLI test: writes small checkpoints (not a test itself)
add_executable(sample_mkckpt test_sample_mkckpt.c)
target_link_libraries(sample_mkckpt PRIVATE kbcore)
kb_sh_test(test_sample_cli test_sample_cli.sh)
set_tests_properties(test_sample_cli PROPERTIES FIXTURES_REQUIRED dit_ref)
# `kindbench sample --device cuda` against the CPU, reruns, bf16 (skipped, 77, without a GPU)
kb_sh_test(test_sample_cuda test_sample_cuda.sh)
set_tests_properties(test_sample_cuda PROPERTIES FIXTURES_REQUIRED dit_ref LABELS cuda)
