// Module initialization that takes >= 100 ms (builds a lookup table), like loading a
// framework or a model: an L2 seed pays it once; a fresh process pays it every time.
const t0 = Date.now();
const table = new Map();
let x = 1;
while (Date.now() - t0 < 120) { for (let i = 0; i < 10000; i++) { x = (x * 48271) % 2147483647; table.set(x & 0xffff, x); } }
module.exports.handler = async (event) => ({ entries: table.size, key: table.get(event.k ?? 1) ?? null });
