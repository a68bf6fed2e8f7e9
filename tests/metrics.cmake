# ---- metrics tests ------------------------------------------------------
#   test_metrics           FID/sFID, IS, P/R, D/C, KID, spectral vs numpy/scipy/torch
#                          references on synthetic features (fixture: ref/metrics_ref.py)
#   test_metrics_badinput  bad input to the metric functions and the npz interop
#   test_metrics_cli       `kindbench eval` end to end with the test-only pixels featuriser
#   test_npz_replaced      an npz (features cache entry, eval input) read while another process renames a new one onto it
#   test_decode_parity     eval folder images decoded byte for byte as PIL's Image.open(p).convert('RGB')
#                          (corpus written at test time by ref/decode_parity_ref.py; skips without PIL)
kb_py_fixture(metrics ref/metrics_ref.py)
kb_c_test(test_metrics SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_metrics.c FIXTURES metrics LABELS metrics)
set_tests_properties(fixture_metrics PROPERTIES LABELS metrics)
kb_sh_test(test_metrics_cli test_metrics_cli.sh)
set_tests_properties(test_metrics_cli PROPERTIES LABELS metrics)
kb_c_test(test_metrics_badinput SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_metrics_badinput.c LABELS metrics)
# a features-cache entry renamed over while it is read: every read one whole entry
kb_c_test(test_npz_replaced SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_npz_replaced.c LABELS metrics)
kb_c_test(test_decode_parity SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_decode_parity.c LABELS metrics)
foreach(t test_metrics test_metrics_badinput test_npz_replaced test_decode_parity)
  target_compile_options(${t} PRIVATE -Wno-format-truncation)
endforeach()

# Fréchet distance timing (not a test): build-dir/tests/bench_fid [dim] [reps];
# bench/bench_fid.sh runs it beside scipy's sqrtm.
add_executable(bench_fid ${CMAKE_CURRENT_LIST_DIR}/../bench/bench_fid.c)
target_link_libraries(bench_fid PRIVATE kbcore)
