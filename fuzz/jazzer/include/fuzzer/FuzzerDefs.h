// The one declaration that Jazzer.js's addon sources (utils.h) take from libFuzzer's
// internal header compiler-rt/lib/fuzzer/FuzzerDefs.h, which Debian's libclang-rt-16-dev
// does not ship. Same signature as upstream (the archive exports
// _ZN6fuzzer12FuzzerDriverEPiPPPcPFiPKhmE).
#pragma once
#include <cstddef>
#include <cstdint>

namespace fuzzer {
typedef int (*UserCallback)(const uint8_t *Data, size_t Size);
int FuzzerDriver(int *argc, char ***argv, UserCallback Callback);
} // namespace fuzzer
