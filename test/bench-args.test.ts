// bench/args.ts: the long benches refuse unknown flags and bad numbers (exit 2, the usage on
// stderr) instead of starting a half-hour run with defaults; --help prints the usage (exit 0).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ARGS = fileURLToPath(new URL('../dist/bench/args.js', import.meta.url));

function run(argv: string[]): { code: number | null; stdout: string; stderr: string; values: unknown } {
  const script = `import { benchArgs } from ${JSON.stringify(ARGS)};
    const v = benchArgs(process.argv.slice(1), 'usage: bench [--minutes 30]', {
      minutes: { type: 'number', default: 30, help: 'how long' },
      out: { type: 'string', help: 'a file' },
      json: { type: 'boolean', help: 'raw stats' },
    });
    console.log(JSON.stringify(v));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, '--', ...argv], { encoding: 'utf8' });
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  let values: unknown = null;
  try { values = JSON.parse(last); } catch { /* usage text */ }
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, values };
}

describe('bench flags', () => {
  it('takes the flags, with defaults for absent ones', () => {
    expect(run([]).values).toEqual({ minutes: 30, json: false });
    expect(run(['--minutes', '2.5', '--out', '/tmp/x.md', '--json']).values).toEqual({ minutes: 2.5, out: '/tmp/x.md', json: true });
    expect(run(['--minutes=0']).values).toEqual({ minutes: 0, json: false });
  });

  it.each([
    [['--minuts', '3'], "Unknown option '--minuts'"],
    [['--minutes', 'x'], '--minutes must be a number ≥ 0, not "x"'],
    [['--minutes=-1'], '--minutes must be a number ≥ 0'],
    [['--minutes', '-1'], "Option '--minutes' argument is ambiguous"],
    [['--minutes', ''], '--minutes must be a number ≥ 0'],
    [['--minutes'], "Option '--minutes <value>' argument missing"],
    [['stray'], 'positional'],
  ])('refuses %j with a message and the usage (exit 2)', (argv, message) => {
    const r = run(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain('usage: bench');
    expect(r.stdout).toBe('');
  });

  it('--help prints the usage and every flag, and exits 0', () => {
    const r = run(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('usage: bench [--minutes 30]');
    expect(r.stdout).toMatch(/--minutes\s+how long \(default 30\)/);
    expect(r.stdout).toMatch(/--json\s+raw stats/);
  });
});
