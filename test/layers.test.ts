// The import-layer check (.dependency-cruiser.cjs, README "Architecture map"): the repository
// passes it, and it bites: an import that goes back up a layer, one between siblings, a keeper
// import beyond its allowance and a cycle each fail it.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repo = resolve(import.meta.dirname ?? '.', '..');
const depcruise = join(repo, 'node_modules', '.bin', 'depcruise');
const config = join(repo, '.dependency-cruiser.cjs');
const LAYER_DIRS = ['sys', 'protocols', 'pools', 'engines', 'seeds', 'functions', 'task', 'daemon', 'keeper', 'shim', 'cli'];

async function cruise(cwd: string, dirs: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run(depcruise, ['--config', config, '--output-type', 'err', ...dirs], { cwd, timeout: 120_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

describe('import layers', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'spore-layers-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('the repository has no import that goes back up a layer', async () => {
    const r = await cruise(repo, LAYER_DIRS);
    expect(r.out).toContain('no dependency violations');
    expect(r.code).toBe(0);
  }, 120_000);

  it('fails on an upward import, a sibling import, a keeper import beyond sys/protocols and a cycle', async () => {
    const files: Record<string, string> = {
      'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }),
      'package.json': JSON.stringify({ type: 'module' }),
      'sys/bad.ts': "import { x } from '../daemon/x.js';\nexport const y = x;\n",
      'daemon/x.ts': 'export const x = 1;\n',
      'task/t.ts': "import { f } from '../functions/f.js';\nexport const t = f;\n",
      'functions/f.ts': 'export const f = 1;\n',
      'keeper/k.ts': "import { p } from '../pools/p.js';\nexport const k = p;\n",
      'pools/p.ts': 'export const p = 1;\n',
      'seeds/a.ts': "import { b } from './b.js';\nexport const a = () => b;\n",
      'seeds/b.ts': "import { a } from './a.js';\nexport const b = () => a;\n",
    };
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(dirname(join(tmp, name)), { recursive: true });
      writeFileSync(join(tmp, name), text);
    }
    const r = await cruise(tmp, ['sys', 'daemon', 'task', 'functions', 'keeper', 'pools', 'seeds']);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/layer-sys: sys\/bad\.ts → daemon\/x\.ts/);
    expect(r.out).toMatch(/layer-task: task\/t\.ts → functions\/f\.ts/);
    expect(r.out).toMatch(/keeper-small: keeper\/k\.ts → pools\/p\.ts/);
    expect(r.out).toMatch(/no-circular/);
  }, 120_000);
});
