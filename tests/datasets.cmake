# ---- datasets tests ----------------------------------------------------
# PIL reference for the resize recipe, then the C comparison.
kb_py_fixture(data_resize ref/resize_ref.py)
kb_c_test(test_data_resize_pil SOURCES test_data_resize_pil.c FIXTURES data_resize LABELS datasets)

# Fashion-MNIST from Debian (skips when dataset-fashion-mnist is absent).
kb_py_fixture(data_fmnist ref/data_fmnist_ref.py)
kb_c_test(test_data_fmnist SOURCES test_data_fmnist.c FIXTURES data_fmnist LABELS datasets)

# Emoji and Pokémon parsers on synthetic package trees (no network).
kb_py_fixture(data_sources ref/data_sources_ref.py)
kb_c_test(test_data_sources SOURCES test_data_sources.c FIXTURES data_sources LABELS datasets)

# Cache writer/loader, splits, grids: no fixtures.
kb_c_test(test_data_cache SOURCES test_data_cache.c LABELS datasets)

# Bad input, atomic output, determinism, `data info` on corrupt caches.
kb_sh_test(test_data_badinput test_data_badinput.sh)
set_tests_properties(test_data_badinput PROPERTIES FIXTURES_REQUIRED data_resize LABELS datasets)

set_tests_properties(fixture_data_resize fixture_data_fmnist fixture_data_sources PROPERTIES LABELS datasets)

# Test messages are built from paths and kb_err texts into fixed buffers;
# truncating a failure message is harmless, so the warning is noise here.
foreach(t test_data_resize_pil test_data_fmnist test_data_sources test_data_cache)
  target_compile_options(${t} PRIVATE -Wno-format-truncation)
endforeach()
# a signal during temp file creation leaves no temp file (util/fileio.c)
kb_c_test(test_fileio_signals SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_fileio_signals.c LABELS datasets)
# the lock of an output directory names its live holder only (util/fileio.c)
kb_c_test(test_dir_lock SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_dir_lock.c LABELS datasets)
target_compile_options(test_dir_lock PRIVATE -Wno-format-truncation)
