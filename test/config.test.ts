import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FLAGS, KNOWN, helpText, loadConfig, parseFlags } from '../daemon/config.js';

describe('spored config', () => {
  it('has the documented defaults', () => {
    const c = loadConfig([], {});
    expect(c.ttrpcSocket).toBe('/run/spore/ttrpc.sock');
    expect(c.friSocket).toBe('/run/spore/fri.sock');
    expect(c.gatewayAddress).toBe('127.0.0.1:8780');
    expect(c.gatewayToken).toBeNull();
    expect(c.l2Replicas).toBe(2);
    expect(c.stateDir).toBe('/var/lib/spore');
    expect(c.functionConcurrency).toBe(32);
    expect(c.functionQueue).toBe(32);
    expect(c.maxInstances).toBe(256);
    expect(c.fri).toBe(true);
    expect(c.logFile).toBeNull();
  });

  it('the ready line names where the log goes and hides the gateway token', async () => {
    const { loggableConfig } = await import('../daemon/daemon.js');
    const bare = loggableConfig(loadConfig([], {}));
    expect(String(bare.logTo)).toMatch(/^stderr( \(.+\))?$/);
    const named = loggableConfig(loadConfig(['--log', '/tmp/x.log', '--gateway-token', 'sekrit'], {}));
    expect(named).toMatchObject({ logTo: '/tmp/x.log', gatewayToken: '<set>' });
    expect(JSON.stringify(named)).not.toContain('sekrit');
  });

  it('takes flags over env, and both forms of a flag', () => {
    expect(loadConfig(['--function-concurrency', '8'], { SPORE_FUNCTION_CONCURRENCY: '4' }).functionConcurrency).toBe(8);
    expect(loadConfig(['--state-dir=/tmp/x'], {}).stateDir).toBe('/tmp/x');
    expect(loadConfig([], { SPORE_STATE_DIR: '/tmp/y', SPORE_CGROUP_POOL: '4' })).toMatchObject({ stateDir: '/tmp/y', cgroupPool: 4 });
    expect(loadConfig(['--run-dir', '/tmp/r'], {}).stateDir).toBe('/tmp/r/state');
    expect(loadConfig([], { SPORE_FRI_SOCKET: '/tmp/f.sock' }).friSocket).toBe('/tmp/f.sock');
    expect(loadConfig(['--gateway', 'off'], {}).gatewayAddress).toBe('off');
    expect(loadConfig([], { SPORE_FRI: 'off' }).fri).toBe(false);
    expect(loadConfig([], {}).directShells).toBe(true);
    expect(loadConfig([], { SPORE_DIRECT_SHELLS: 'off' }).directShells).toBe(false);
    expect(loadConfig(['--direct-shells', 'off'], {}).directShells).toBe(false);
  });

  it('rejects bad values with a message that says what to fix', () => {
    expect(() => loadConfig(['--function-concurrency', 'lots'], {})).toThrow(/--function-concurrency must be an integer between 0 and 1024/);
    expect(() => loadConfig(['--cgroup-pool', '-1'], {})).toThrow(/--cgroup-pool must be an integer between 0 and 4096/);
    expect(() => loadConfig(['--bogus', '1'], {})).toThrow(/unknown flag --bogus.*spored --help/);
    expect(() => loadConfig(['--gateway'], {})).toThrow(/needs a value/);
    expect(() => loadConfig(['--gateway', 'localhost'], {})).toThrow(/bad gateway address "localhost".*or off/);
    expect(() => loadConfig(['--fri', 'maybe'], {})).toThrow(/--fri must be on or off/);
    expect(() => loadConfig([], { SPORE_DIRECT_SHELLS: 'yes' })).toThrow(/SPORE_DIRECT_SHELLS \(--direct-shells\) must be on or off/);
    expect(() => loadConfig(['--cgroup-favordynmods', 'off'], {})).toThrow(/--cgroup-favordynmods must be on or keep, got "off" \(spored never turns it off: keep leaves the host as it is\)/);
    expect(loadConfig([], { SPORE_CGROUP_FAVORDYNMODS: 'keep' }).cgroupFavorDynmods).toBe('keep');
    // a bad value from the environment names the variable it came from
    expect(() => loadConfig([], { SPORE_CGROUP_FAVORDYNMODS: 'yes' })).toThrow(/^SPORE_CGROUP_FAVORDYNMODS \(--cgroup-favordynmods\) must be on or keep, got "yes"$/);
    expect(() => loadConfig([], { SPORE_CGROUP_POOL: 'x' })).toThrow(/^SPORE_CGROUP_POOL \(--cgroup-pool\) must be an integer/);
    expect(() => loadConfig(['--parked', 'x'], { SPORE_PARKED: '2' })).toThrow(/^--parked must be/);
    expect(loadConfig([], {}).cgroupFavorDynmods).toBe('on');
  });

  it('gateway token: flag, env or the first line of a file; never both; never empty', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-cfg-'));
    try {
      const file = path.join(dir, 'token');
      fs.writeFileSync(file, 'from-file-123\nignored\n', { mode: 0o600 });
      expect(loadConfig(['--gateway-token', 'abc'], {}).gatewayToken).toBe('abc');
      expect(loadConfig([], { SPORE_GATEWAY_TOKEN: 'envtok' }).gatewayToken).toBe('envtok');
      expect(loadConfig(['--gateway-token-file', file], {}).gatewayToken).toBe('from-file-123');
      expect(loadConfig([], { SPORE_GATEWAY_TOKEN_FILE: file }).gatewayToken).toBe('from-file-123');
      expect(() => loadConfig(['--gateway-token', 'a', '--gateway-token-file', file], {})).toThrow(/not both/);
      expect(() => loadConfig(['--gateway-token-file', path.join(dir, 'none')], {})).toThrow(/cannot read --gateway-token-file .*ENOENT/);
      fs.writeFileSync(file, '\n');
      expect(() => loadConfig(['--gateway-token-file', file], {})).toThrow(/token is empty/);
      expect(() => loadConfig(['--gateway-token', 'a b'], {})).toThrow(/printable ASCII/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('spored flags come from one table', () => {
  it('KNOWN is the table plus --help; every flag has a description; env names are SPORE_<FLAG>', () => {
    expect([...KNOWN].sort()).toEqual([...FLAGS.map((f) => f.name), 'help'].sort());
    for (const f of FLAGS) {
      expect(f.help.length, f.name).toBeGreaterThan(10);
      expect(f.help, f.name).not.toContain('\n');
      // SPORE_<FLAG>; containerd's own TTRPC_ADDRESS for its socket
      if (f.env !== null && f.name !== 'containerd-ttrpc') expect(f.env).toBe(`SPORE_${f.name.toUpperCase().replace(/-/g, '_')}`);
    }
  });

  it('each flag and each env variable sets its field, and a literal default is the value used', () => {
    const defaults = loadConfig([], {});
    for (const f of FLAGS) {
      if (f.literal) expect(String(defaults[f.key]), `--${f.name} default`).toBe(f.default);
      if (f.max !== undefined) {
        expect(loadConfig([`--${f.name}`, '3'], {})[f.key], `--${f.name}`).toBe(3);
        if (f.env) expect(loadConfig([], { [f.env]: '3' })[f.key], f.env).toBe(3);
      }
    }
  });

  it('--help lists every flag with its env variable and default', () => {
    const h = helpText();
    for (const f of FLAGS) {
      expect(h).toContain(`--${f.name} ${f.arg}`);
      expect(h).toContain(`env ${f.env ?? '-'} · default ${f.default}`);
    }
    expect(parseFlags(['--help'])).toEqual({ help: 'true' });
    expect(parseFlags(['-h', '--gateway', 'off'])).toEqual({ help: 'true', gateway: 'off' });
  });

  it('bin/spored --help and -h print it and exit 0 (built dist)', () => {
    const main = path.resolve('dist/daemon/main.js');
    if (!fs.existsSync(main)) return; // npm run build first
    for (const flag of ['--help', '-h']) {
      const r = spawnSync(process.execPath, [main, flag], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(helpText());
      // bin/spored checks its flags with spored before it starts the keeper: the same text
      // must come out (through the keeper it once came out nowhere: Node had marked stdout
      // close-on-exec)
      const viaKeeper = spawnSync(path.resolve('bin/spored'), [flag], { encoding: 'utf8' });
      expect(viaKeeper.status, viaKeeper.stderr).toBe(0);
      expect(viaKeeper.stdout).toBe(helpText());
    }
    const bad = spawnSync(process.execPath, [main, '--bogus', '1'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^spored: unknown flag --bogus.*\n$/);
  });

  it('bin/spored with a bad flag or variable exits 2 with spored\'s message, instead of the keeper retrying forever', () => {
    if (!fs.existsSync(path.resolve('dist/keeper/main.js')) || process.getuid?.() !== 0) return; // built dist, root (the keeper takes the run dir's lock)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-badflag-'));
    try {
      const t0 = Date.now();
      const runDir = path.join(dir, 'run');
      const r = spawnSync(path.resolve('bin/spored'), ['--run-dir', runDir, '--cgroup-favordynmods', 'off'], { encoding: 'utf8', timeout: 30_000 });
      expect(r.status, r.stderr).toBe(2);
      // spored's one line, nothing else (the keeper's log lines buried it), and nothing made
      expect(r.stderr).toMatch(/^spored: --cgroup-favordynmods must be on or keep, got "off".*\n$/);
      expect(Date.now() - t0).toBeLessThan(15_000);
      expect(fs.existsSync(runDir)).toBe(false);
      const env = spawnSync(path.resolve('bin/spored'), ['--run-dir', dir], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, SPORE_PARKED: 'lots' } });
      expect(env.status, env.stderr).toBe(2);
      expect(env.stderr).toMatch(/SPORE_PARKED/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
