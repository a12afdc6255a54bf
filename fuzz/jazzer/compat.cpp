// Glue between Jazzer.js's native addon sources (@jazzer.js/fuzzer 2.1.0, the last npm
// release that ships its C++ sources) and upstream libFuzzer (Debian's libclang-rt-16-dev),
// exposing the native API that the Jazzer.js 4.0.0 JavaScript packages expect.
// fuzz/jazzer/build-addon.sh compiles it; fuzz/jazzer/load-addon.cjs loads the result when
// the prebuilt 4.0.0 addon cannot be loaded (it needs glibc >= 2.38; Debian 12 has 2.36).
//
// What Jazzer.js's own libFuzzer fork does differently, and how it is made up for here:
//  1. the death callback (dumps the crashing input) is handed over through
//     __jazzer_set_death_callback: upstream calls __sanitizer_set_death_callback;
//  2. compare/indirect-call tracing takes the JS hook id as PC (..._with_pc): upstream has
//     only the variants that take the caller's PC; the id is lost, which only matters for
//     -use_value_profile=1 (the table of recent compares, which drives the CMP mutations,
//     does not use the PC);
//  3. a callback return of -2 (a finding, or SIGINT) stops the loop: upstream ignores it,
//     so the process ends here with libFuzzer's crash exit code once the JS side has
//     printed the finding and dumped the input;
//  4. FuzzerDriver returns: upstream calls exit(0) after its final stats, from the fuzzing
//     thread in async mode; an on_exit handler turns every exit() after the start of
//     fuzzing into _Exit(status), so no static destructor runs under a live V8.
// 4.0.0 also added registerModuleCounters (one counter region per ES module).
#include <napi.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#include <fuzzer/FuzzerDefs.h>

#include "shared/callbacks.h"
#include "shared/libfuzzer.h"

extern "C" {
void __sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *end);
void __sanitizer_cov_pcs_init(const uintptr_t *pcs_beg, const uintptr_t *pcs_end);
void __sanitizer_cov_trace_const_cmp8(uint64_t arg1, uint64_t arg2);
void __sanitizer_cov_trace_pc_indir(uintptr_t callee);
void __jazzer_set_death_callback(void (*callback)());

// (1) upstream libFuzzer finds this one through a weak reference
__attribute__((visibility("default"))) void
__sanitizer_set_death_callback(void (*callback)()) {
  __jazzer_set_death_callback(callback);
}

// (2)
__attribute__((visibility("default"))) void
__sanitizer_cov_trace_const_cmp8_with_pc(uintptr_t, uint64_t arg1, uint64_t arg2) {
  __sanitizer_cov_trace_const_cmp8(arg1, arg2);
}
__attribute__((visibility("default"))) void
__sanitizer_cov_trace_pc_indir_with_pc(void *, uintptr_t callee) {
  __sanitizer_cov_trace_pc_indir(callee);
}
}

namespace {
fuzzer::UserCallback gCallback = nullptr;

// (3)
int StopOnExitCode(const uint8_t *data, size_t size) {
  int result = gCallback(data, size);
  if (result == libfuzzer::RETURN_EXIT) {
    std::fprintf(stderr, "==%d== Jazzer.js (spore build): fuzzing stopped\n", (int)getpid());
    std::fflush(nullptr);
    _Exit(libfuzzer::EXIT_ERROR_CODE);
  }
  return result;
}

// (4)
void ExitNow(int status, void *) {
  std::fflush(nullptr);
  _Exit(status);
}

struct PCTableEntry {
  uintptr_t PC, PCFlags;
};
// Fake PCs of module counters start above those of the shared map (0 .. 2^20).
uintptr_t gNextModulePC = uintptr_t(1) << 32;

void RegisterModuleCounters(const Napi::CallbackInfo &info) {
  if (info.Length() != 1 || !info[0].IsBuffer()) {
    throw Napi::Error::New(info.Env(), "Need one argument: the module's counter Buffer");
  }
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  size_t n = buf.Length();
  if (n == 0) return;
  auto *pcs = new PCTableEntry[n]; // lives as long as libFuzzer watches the counters
  for (size_t i = 0; i < n; ++i) pcs[i] = {gNextModulePC + i, 0};
  gNextModulePC += n;
  __sanitizer_cov_8bit_counters_init(buf.Data(), buf.Data() + n);
  __sanitizer_cov_pcs_init(reinterpret_cast<uintptr_t *>(pcs),
                           reinterpret_cast<uintptr_t *>(pcs + n));
}
} // namespace

namespace fuzzer {
// utils.cpp is compiled with -DFuzzerDriver=SporeFuzzerDriver
int SporeFuzzerDriver(int *argc, char ***argv, UserCallback callback) {
  gCallback = callback;
  on_exit(ExitNow, nullptr);
  return FuzzerDriver(argc, argv, StopOnExitCode);
}
} // namespace fuzzer

// addon.cpp is compiled with -DRegisterCallbackExports=SporeRegisterCallbackExports
void SporeRegisterCallbackExports(Napi::Env env, Napi::Object exports) {
  RegisterCallbackExports(env, exports);
  exports["registerModuleCounters"] = Napi::Function::New<RegisterModuleCounters>(env);
}
