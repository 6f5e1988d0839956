# Shared build settings for kforge targets.

set(KFORGE_SANITIZER_FLAGS "")
if(KFORGE_FUZZ)
  # Coverage for libFuzzer in every target; the fuzz executables add -fsanitize=fuzzer.
  set(KFORGE_SANITIZER_FLAGS -fsanitize=address,undefined,fuzzer-no-link -fno-omit-frame-pointer
                             -fno-sanitize-recover=undefined)
elseif(KFORGE_SANITIZE)
  # -O1 (after the build type's -O2 on the command line, so it wins), as the sanitizers
  # advise: it halves the instrumented build's compile time, which keeps
  # scripts/sanitize.sh within a CI job.
  set(KFORGE_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -O1)
elseif(KFORGE_TSAN)
  set(KFORGE_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer -O1)
endif()

# kforge_target_defaults(target): warnings (as errors), sanitizers, include root.
function(kforge_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                           -Wno-missing-field-initializers)
  target_compile_definitions(${target} PRIVATE KFORGE_VERSION="${PROJECT_VERSION}")
  if(NOT KFORGE_FULL_DEBUG_INFO)
    # after CMAKE_CXX_FLAGS_RELWITHDEBINFO's -g on the command line, so it wins
    target_compile_options(${target} PRIVATE $<$<CONFIG:RelWithDebInfo>:-g1>)
  endif()
  if(KFORGE_FAST_BUILD AND NOT KFORGE_SANITIZER_FLAGS)
    # scripts/test.sh's build: -O1 and no debug info, after the build type's flags
    target_compile_options(${target} PRIVATE -O1 -g0)
  endif()
  if(KFORGE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
    # GCC 12 at -O3 reports a false -Wrestrict inside std::string assignment (GCC bug 105329).
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE -Wno-error=restrict)
    endif()
  endif()
  if(KFORGE_SANITIZER_FLAGS)
    target_compile_options(${target} PRIVATE ${KFORGE_SANITIZER_FLAGS})
    target_link_options(${target} PRIVATE ${KFORGE_SANITIZER_FLAGS})
  endif()
endfunction()

# kforge_test_defaults(target): kforge_target_defaults, and the tests' own code compiled
# without optimisation (-O0 after the build type's -O2, so it wins) unless sanitizing (their
# -O1 stays). The code under test (the libraries) keeps the build type's flags; -O0 halves the
# compile time of a test source (api_test.cpp: 28.6 s of CPU at -O2, 11.7 s at -O0), which
# is most of a clean build's time (scripts/test.sh within CI's 10 minutes).
function(kforge_test_defaults target)
  kforge_target_defaults(${target})
  if(KFORGE_TEST_O0 AND NOT KFORGE_SANITIZER_FLAGS)
    target_compile_options(${target} PRIVATE -O0)
  endif()
endfunction()

# kforge_add_test(name source... LIBS lib...): one doctest executable registered with ctest.
function(kforge_add_test name)
  cmake_parse_arguments(ARG "" "" "LIBS" ${ARGN})
  add_executable(${name} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE kforge_test_support ${ARG_LIBS})
  kforge_test_defaults(${name})
  # GCC 12 with -fsanitize=address reports a false -Wmaybe-uninitialized inside <regex> itself
  # (the std::function of a moved NFA state), which tests use: a warning there, not an error.
  if(KFORGE_SANITIZE AND KFORGE_WERROR AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${name} PRIVATE -Wno-error=maybe-uninitialized)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300)
endfunction()
