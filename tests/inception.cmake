# FID Inception-v3 (metrics/inception*.c), the safe PyTorch checkpoint reader
# (metrics/torch_pickle*.c) and the convolution/pooling ops (nn/ops_conv*.c).
#   fixture inception_ref   tests/ref/inception_ref.py: random-weight Inception in
#                           the legacy and zip formats, images, PyTorch features
#   test_inception_ops      conv/pool fast CPU path vs the plain references
#   test_torch_pickle       the reader on small files, both formats, the real
#                           file's header (../shared/weights), hostile pickles
#   test_torch_pickle_fuzz  thousands of mutated/truncated files: error or result, never a crash
#   test_inception          features vs PyTorch (legacy and zip weights), the
#                           three resizes, weight look-up and hash errors
#   test_inception_cuda     cuDNN path vs CPU (skipped without a GPU)
#   test_inception_real     the real weights when ../shared/weights has them (else skipped)
#   test_eval_resume        eval stats stopped part way resumes from its partial features
#   test_eval_cuda          `eval --device cuda` against `--device cpu`, every metric (skipped without a GPU)
kb_py_fixture(inception_ref ref/inception_ref.py)
set_tests_properties(fixture_inception_ref PROPERTIES LABELS inception)

kb_c_test(test_inception_ops SOURCES test_inception_ops.c LABELS inception)
kb_c_test(test_torch_pickle SOURCES test_torch_pickle.c FIXTURES inception_ref LABELS inception)
kb_c_test(test_torch_pickle_fuzz SOURCES test_torch_pickle_fuzz.c FIXTURES inception_ref LABELS inception)
kb_c_test(test_inception SOURCES test_inception.c FIXTURES inception_ref LABELS inception)
kb_c_test(test_inception_cuda SOURCES test_inception_cuda.c FIXTURES inception_ref LABELS "inception;cuda")
kb_c_test(test_inception_real SOURCES test_inception_real.c FIXTURES inception_ref LABELS inception)
foreach(t test_inception_ops test_torch_pickle test_torch_pickle_fuzz test_inception test_inception_cuda test_inception_real)
  target_compile_options(${t} PRIVATE -Wno-format-truncation)
endforeach()

# `eval stats` stopped by Ctrl-C resumes from its partial features, equal to an unbroken run
kb_sh_test(test_eval_resume test_eval_resume.sh)
set_tests_properties(test_eval_resume PROPERTIES FIXTURES_REQUIRED inception_ref LABELS inception)
kb_sh_test(test_eval_cuda test_eval_cuda.sh)
set_tests_properties(test_eval_cuda PROPERTIES FIXTURES_REQUIRED inception_ref LABELS "inception;cuda")

# Speed comparison with PyTorch (not a test): bench/bench_inception.sh
add_executable(bench_inception ${CMAKE_CURRENT_LIST_DIR}/../bench/bench_inception.c)
target_link_libraries(bench_inception PRIVATE kbcore)
