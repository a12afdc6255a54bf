// Import layers (README "Architecture map"). A module may import from its own folder and
// from layers below it, never from a layer above or a sibling at the same level. `npm run
// layers` (and CI, through scripts/test) fails on the first import that goes back up.
const LAYERS = [
  ['sys', 'fri-proto'],         // 0 ground: syscalls (koffi), constants, typed errors; generated protobuf
  ['protocols'],                // 1 wire formats: ttrpc framing, FRI types/codec/server/client, OCI spec
  ['pools'],                    // 2 pooled resources: cgroups, precompiled seccomp
  ['engines'],                  // 3 sandbox engines: process (root seed, container init), vm (KVM monitor)
  ['seeds'],                    // 4 code that runs inside language seeds (Node, Python) and their protocol
  ['functions', 'task'],        // 5 the function runtime; containerd's Task service
  ['daemon', 'keeper'],         // 6 spored's wiring (config, servers, gateway, metrics); the keeper
  ['shim', 'cli'],              // 7 entry points: the containerd shim launcher, the spore CLI
];
const rules = [];
for (const [i, dirs] of LAYERS.entries()) {
  for (const from of dirs) {
    const above = LAYERS.slice(i + 1).flat();
    const siblings = dirs.filter((d) => d !== from);
    const banned = [...above, ...siblings];
    if (banned.length === 0) continue;
    rules.push({
      name: `layer-${from}`,
      comment: `${from}/ is layer ${i}; it may not import ${banned.join(', ')} (a higher layer or a sibling)`,
      severity: 'error',
      from: { path: `^${from}/` },
      to: { path: `^(${banned.join('|')})/` },
    });
  }
}
// the keeper must stay small: the ground and the wire formats only
rules.push({
  name: 'keeper-small',
  comment: 'keeper/ outlives spored: it may import only sys/ and protocols/ (and node/npm)',
  severity: 'error',
  from: { path: '^keeper/' },
  to: { path: '^(pools|engines|seeds|functions|task|daemon)/' },
});
rules.push({ name: 'no-circular', severity: 'error', from: {}, to: { circular: true } });
rules.push({ name: 'not-to-unresolvable', severity: 'error', from: {}, to: { couldNotResolve: true } });

module.exports = {
  forbidden: rules,
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules|fuzz/\\.build)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'], mainFields: ['module', 'main', 'types'] },
  },
};
