# KB_CUDA_EMU=ON (see tests/cuda_emu/kb_cuda_emu.h): kbcore with its .cu files
# rewritten (rewrite_launches.pl) and compiled as C++ for the CPU, linked with
# the emulator instead of the CUDA libraries. Needs the CUDA headers only.
enable_language(CXX)
find_path(KB_EMU_CUDA_INCLUDE cuda_runtime.h HINTS /usr/local/cuda/include REQUIRED)
find_path(KB_EMU_CUDNN_INCLUDE cudnn.h HINTS ${KB_EMU_CUDA_INCLUDE} /usr/local/cuda/include REQUIRED)
find_program(KB_PERL perl REQUIRED)
set(KB_EMU_DIR ${CMAKE_SOURCE_DIR}/tests/cuda_emu)
set(KB_EMU_GEN ${CMAKE_BINARY_DIR}/cuda_emu)
# kb_emu_rewrite(CU OUT_VAR): the emulator's view of one .cu file (rewrite_launches.pl), compiled with
# kb_cuda_emu.h force-included and -mfma -ffp-contract=fast: a*b+c contracted as nvcc contracts device
# code by default (--fmad=true), so that a kernel's plain expression the CPU reference rounds
# differently shows here too. OUT_VAR gets the generated file's path.
# A .cuh header is rewritten to ${KB_EMU_GEN}/REL (no .cpp), found first on kbcore's include path.
function(kb_emu_rewrite cu out_var)
  file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${cu})
  if(cu MATCHES "\\.cuh$")
    set(out ${KB_EMU_GEN}/${rel})
  else()
    set(out ${KB_EMU_GEN}/${rel}.cpp)
  endif()
  get_filename_component(outdir ${out} DIRECTORY)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${outdir}
    COMMAND ${KB_PERL} ${KB_EMU_DIR}/rewrite_launches.pl ${cu} ${out}
    DEPENDS ${cu} ${KB_EMU_DIR}/rewrite_launches.pl
    COMMENT "CUDA emulator: ${rel}")
  set_source_files_properties(${out} PROPERTIES
    COMPILE_OPTIONS "-include;${KB_EMU_DIR}/kb_cuda_emu.h;-mfma;-ffp-contract=fast"
    OBJECT_DEPENDS ${KB_EMU_DIR}/kb_cuda_emu.h)
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()
set(KB_EMU_SOURCES)
file(GLOB KB_CUH_HEADERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/nn/*.cuh ${CMAKE_SOURCE_DIR}/models/*.cuh
  ${CMAKE_SOURCE_DIR}/metrics/*.cuh)
foreach(cu ${KB_CU_SOURCES} ${KB_CUH_HEADERS})
  kb_emu_rewrite(${cu} out)
  list(APPEND KB_EMU_SOURCES ${out})
endforeach()
set(KB_EMU_RUNTIME ${KB_EMU_DIR}/emu_core.cpp ${KB_EMU_DIR}/emu_cudart.cpp ${KB_EMU_DIR}/emu_cublas.cpp
  ${KB_EMU_DIR}/emu_cudnn.cpp)
add_library(kbcore STATIC ${KB_C_SOURCES} ${KB_EMU_SOURCES} ${KB_EMU_RUNTIME})
target_compile_definitions(kbcore PUBLIC KB_HAVE_CUDA=1 KB_CUDA_EMU=1)
# the architectures the emulated build is "built for" (emu_cudart.cpp's cudaFuncGetAttributes)
target_compile_definitions(kbcore PRIVATE KB_CUDA_ARCHS="90")
target_include_directories(kbcore BEFORE PRIVATE ${KB_EMU_GEN}) # the rewritten .cuh headers before the originals
target_include_directories(kbcore PRIVATE ${KB_EMU_CUDA_INCLUDE} ${KB_EMU_CUDNN_INCLUDE} ${KB_EMU_DIR})
target_compile_options(kbcore PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-std=c++17 -O2 -g
  -Wno-attributes -Wno-unused-parameter>)
target_link_libraries(kbcore PUBLIC stdc++)
# the fiber switch's hand-made `ret` is not shadow-stack compatible
set_source_files_properties(${KB_EMU_DIR}/emu_core.cpp PROPERTIES COMPILE_OPTIONS "-fcf-protection=none")
message(STATUS "kindbench: CUDA backend on the CPU emulator (tests/cuda_emu; no GPU code is built)")

# The emulator's own test (tests/cuda_emu/test_cuda_emu.cu), rewritten like the library's .cu files.
kb_emu_rewrite(${KB_EMU_DIR}/test_cuda_emu.cu test_src)
add_executable(test_cuda_emu ${test_src})
target_include_directories(test_cuda_emu PRIVATE ${KB_EMU_CUDA_INCLUDE} ${KB_EMU_DIR})
target_compile_options(test_cuda_emu PRIVATE -std=c++17 -O2 -Wno-attributes)
target_link_libraries(test_cuda_emu PRIVATE kbcore)

# KB_EMU_ASAN=ON: everything with AddressSanitizer, so that a kernel reading or
# writing past a cudaMalloc'd buffer (allocated to its exact size) aborts, and
# UBSan, so that a float4/uint4 access through a pointer that is not 16-byte
# aligned (a misaligned-address fault on a GPU; x86 does not mind), a shift
# past the width or a signed index overflow aborts too.
option(KB_EMU_ASAN "With KB_CUDA_EMU: build with AddressSanitizer and UBSan" OFF)
if(KB_EMU_ASAN)
  target_compile_options(kbcore PUBLIC -fsanitize=address,undefined -fno-sanitize-recover=undefined
                         -fno-omit-frame-pointer)
  target_link_options(kbcore PUBLIC -fsanitize=address,undefined)
endif()

# KB_EMU_TSAN=ON: the kernels (and everything else) with ThreadSanitizer, so
# that two accesses from different emulated GPU threads, one a write, with no
# __syncthreads, warp collective or launch boundary between them, are reported
# as a data race (in shared or global memory, within a block or between the
# blocks of a launch). emu_core.cpp itself is not instrumented: it tells TSan
# which fiber runs and which happens-before the GPU gives (KB_EMU_TSAN there).
option(KB_EMU_TSAN "With KB_CUDA_EMU: build with ThreadSanitizer (GPU threads' data races)" OFF)
if(KB_EMU_TSAN AND KB_EMU_ASAN)
  message(FATAL_ERROR "KB_EMU_TSAN and KB_EMU_ASAN cannot be combined (one sanitizer runtime at a time)")
endif()
# The C sources (host code, which runs between launches on one thread in these
# checks) stay uninstrumented: their target_clones resolvers run before TSan has
# started, and crash when instrumented.
if(KB_EMU_TSAN)
  target_compile_options(kbcore PUBLIC $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=thread -fno-omit-frame-pointer>)
  target_link_options(kbcore PUBLIC -fsanitize=thread)
  set_source_files_properties(${KB_EMU_DIR}/emu_core.cpp PROPERTIES
    COMPILE_OPTIONS "-fcf-protection=none;-fno-sanitize=thread" COMPILE_DEFINITIONS "KB_EMU_TSAN=1")
endif()
