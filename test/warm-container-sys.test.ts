// The root seed runs every container set-up call once at start (container-sys.ts
// warmContainerSys) so its forks find them warm. It runs in the seed itself, as root in the
// host's namespaces: it must change nothing there. A Node process takes a snapshot of
// everything those calls could touch, warms, and takes it again.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('warmContainerSys', () => {
  it('leaves the calling process and the host as they were', () => {
    const mod = new URL('../dist/engines/process/container-sys.js', import.meta.url).href;
    const koffiUrl = new URL('../node_modules/koffi/index.js', import.meta.url).href;
    const code = `
      const { warmContainerSys } = await import(${JSON.stringify(mod)});
      const koffi = (await import(${JSON.stringify(koffiUrl)})).default;
      const fs = await import('node:fs');
      const os = await import('node:os');
      const keyctl = koffi.load('libc.so.6').func('long syscall(long, long, long, long)');
      const status = () => fs.readFileSync('/proc/self/status', 'utf8').split('\\n')
        .filter((l) => /^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Sig(Blk|Ign|Cgt)):/.test(l));
      const snap = () => ({
        status: status(),
        cwd: process.cwd(),
        umask: process.umask(),
        ns: fs.readdirSync('/proc/self/ns').map((n) => n + ' ' + fs.readlinkSync('/proc/self/ns/' + n)),
        mounts: fs.readFileSync('/proc/self/mountinfo', 'utf8'),
        fds: fs.readdirSync('/proc/self/fd').map((f) => { try { return f + ' ' + fs.readlinkSync('/proc/self/fd/' + f); } catch { return f; } }),
        session: fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ').slice(2, 4),
        sessionKeyring: Number(keyctl(250, 0, -3, 0)),
        limits: fs.readFileSync('/proc/self/limits', 'utf8'),
        hostname: os.hostname(),
        domainname: fs.readFileSync('/proc/sys/kernel/domainname', 'utf8'),
        devnull: (() => { const st = fs.statSync('/dev/null'); return [st.isCharacterDevice(), st.rdev, st.mode]; })(),
      });
      const before = snap();
      warmContainerSys();
      console.log(JSON.stringify({ before, after: snap() }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const { before, after } = JSON.parse(r.stdout) as { before: Record<string, unknown>; after: Record<string, unknown> };
    expect(before['status']).not.toEqual([]);
    expect((before['devnull'] as unknown[])[0]).toBe(true);
    expect(after).toEqual(before);
  });
});
