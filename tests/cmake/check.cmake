# The checks the CMake script tests share: include() it, call check(...) and
# fail_check(...) as often as needed, then end with finish_checks(<test>).

set(failures 0)

# check(<what> <actual> <expected>): string equality, counted and reported.
macro(check what actual expected)
  if(NOT "${actual}" STREQUAL "${expected}")
    fail_check("${what}: got '${actual}', want '${expected}'")
  else()
    message(STATUS "ok: ${what}")
  endif()
endmacro()

# fail_check(<message>): one failed check.
macro(fail_check text)
  message(SEND_ERROR "FAIL: ${text}")
  math(EXPR failures "${failures} + 1")
endmacro()

# finish_checks(<test name>): a failed configure-style exit if any check failed.
macro(finish_checks name)
  if(failures GREATER 0)
    message(FATAL_ERROR "${name}: ${failures} check(s) failed")
  endif()
endmacro()
