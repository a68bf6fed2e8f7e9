# ---- DiT trainer (`kindbench train`): CLI end-to-end tests on a synthetic
# 16x16 cache made from PNGs drawn by /usr/bin/python3 (PIL). CPU, one thread.
kb_sh_test(test_train_resume test_train_resume.sh)
kb_sh_test(test_train_badinput test_train_badinput.sh)
kb_sh_test(test_train_learns test_train_learns.sh)
set_tests_properties(test_train_resume test_train_badinput test_train_learns PROPERTIES LABELS train TIMEOUT 300)
# `kindbench bench train --profile`: the per-op table (nn/profile.h) on the CPU.
kb_sh_test(test_bench_profile test_bench_profile.sh)
set_tests_properties(test_bench_profile PROPERTIES LABELS train TIMEOUT 120)
# `kindbench bench train` and `kindbench device`: bad options and stray arguments are usage errors.
kb_sh_test(test_bench_cli test_bench_cli.sh)
set_tests_properties(test_bench_cli PROPERTIES LABELS train TIMEOUT 120)
