# ---- fuzzing the readers of user files ------------------------------------
# .npy/.npz, statistics npz, safetensors, dataset caches, PNG/JPEG/GIF: every
# truncation and 1500 mutants each (fixed seed); scripts/sanitize.sh runs it
# (with the rest of the suite) under ASan and UBSan.
kb_c_test(test_readers_fuzz SOURCES test_readers_fuzz.c LABELS fuzz)
