// Preloaded (node --require) into each Jazzer.js process that fuzz/run.ts starts.
// @jazzer.js/fuzzer 4.0.0 ships one linux-x64 addon, linked against glibc 2.38; where that
// cannot be loaded (Debian 12: glibc 2.36), this loads the one that
// fuzz/jazzer/build-addon.sh built from the same project's sources and Debian's libFuzzer.
// SPORE_JAZZER_ADDON=prebuilt|local forces one of the two.
'use strict';
const path = require('node:path');
const fs = require('node:fs');

const PREBUILT = path.join('@jazzer.js', 'fuzzer', 'prebuilds', `fuzzer-${process.platform}-${process.arch}.node`);
const LOCAL = path.join(__dirname, '..', '.build', 'jazzer', `fuzzer-${process.platform}-${process.arch}.node`);
const dlopen = process.dlopen;

function loadLocal(module, flags, cause) {
  if (!fs.existsSync(LOCAL)) {
    const why = cause ? ` (the prebuilt failed: ${cause.message})` : '';
    throw new Error(`Jazzer.js addon: ${LOCAL} is missing; run fuzz/jazzer/build-addon.sh${why}`);
  }
  process.env.SPORE_JAZZER_ADDON_LOADED = LOCAL;
  return flags === undefined ? dlopen.call(process, module, LOCAL) : dlopen.call(process, module, LOCAL, flags);
}

process.dlopen = function (module, filename, flags) {
  if (typeof filename === 'string' && filename.endsWith(PREBUILT)) {
    const mode = process.env.SPORE_JAZZER_ADDON;
    if (mode === 'local') return loadLocal(module, flags);
    try {
      const r = flags === undefined ? dlopen.call(process, module, filename) : dlopen.call(process, module, filename, flags);
      process.env.SPORE_JAZZER_ADDON_LOADED = filename;
      return r;
    } catch (e) {
      if (mode === 'prebuilt' || !(e && e.code === 'ERR_DLOPEN_FAILED')) throw e;
      return loadLocal(module, flags, e);
    }
  }
  return flags === undefined ? dlopen.call(process, module, filename) : dlopen.call(process, module, filename, flags);
};
