// CreateTaskRequest.options (task/service.ts createOptions): the CRI handler's
// runtimeoptions.v1.Options are read; runc's CreateOptions, which `ctr run --uidmap` sends,
// are not needed (spored relays stdio) and pass quietly; any other type is a warning; a body
// that does not decode is InvalidArgument.
import { create, toBinary } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import { OptionsSchema } from '../fri-proto/gen/runtimeoptions/v1/api_pb.js';
import { InvalidArgument } from '../sys/errors.js';
import { createOptions, processDetails, runcCreateOptionFields } from '../task/service.js';

function recorder(): { log: Logger; lines: [string, string][] } {
  const lines: [string, string][] = [];
  const at = (level: string) => (_o: unknown, msg: string): void => { lines.push([level, msg]); };
  return { log: { warn: at('warn'), debug: at('debug'), info: at('info') } as unknown as Logger, lines };
}

describe('createOptions', () => {
  it('reads the CRI handler\'s ConfigPath; a missing file is a warning', () => {
    const r = recorder();
    const value = toBinary(OptionsSchema, create(OptionsSchema, { configPath: '/nonexistent/spore.toml' }));
    expect(createOptions({ typeUrl: `type.googleapis.com/${OptionsSchema.typeName}`, value } as never, r.log)).toEqual({ configPath: '/nonexistent/spore.toml' });
    expect(r.lines).toEqual([['warn', 'runtime options ConfigPath does not exist']]);
  });

  it('runc\'s CreateOptions: io_uid/io_gid (ctr run --uidmap) pass without a warning; anything else is named', () => {
    const r = recorder();
    // io_uid = 100000 (field 10), io_gid = 100000 (field 11): the bytes ctr 1.6 sends for --uidmap 0:100000:65536
    const uidmap = Buffer.from('50a08d0658a08d06', 'hex');
    expect(createOptions({ typeUrl: 'containerd.linux.runc.CreateOptions', value: uidmap } as never, r.log)).toEqual({});
    expect(r.lines.map(([level]) => level)).toEqual(['debug']);
    // ctr run --no-pivot: no_pivot_root = true
    expect(runcCreateOptionFields(Buffer.from('0801', 'hex'))).toEqual(['no_pivot_root']);
    const w = recorder();
    expect(createOptions({ typeUrl: 'containerd.linux.runc.CreateOptions', value: Buffer.from('080150a08d06', 'hex') } as never, w.log)).toEqual({});
    expect(w.lines).toEqual([['warn', expect.stringMatching(/^runc CreateOptions no_pivot_root not applied by spore/) as unknown as string]]);
    expect(() => runcCreateOptionFields(Buffer.from('0a05', 'hex'))).toThrow(InvalidArgument);
  });

  it('another type is ignored with a warning; options that do not decode are InvalidArgument', () => {
    const r = recorder();
    expect(createOptions({ typeUrl: 'example.com/Other', value: Buffer.from([1, 2]) } as never, r.log)).toEqual({});
    expect(r.lines).toEqual([['warn', 'CreateTask options of a type spore does not read; ignored']]);
    expect(() => createOptions({ typeUrl: OptionsSchema.typeName, value: Buffer.from([0x0a, 0x05, 0x61]) } as never, r.log)).toThrow(InvalidArgument);
  });
});

describe('processDetails', () => {
  it('encodes runc\'s ProcessDetails { exec_id = 1 } as ctr decodes it', () => {
    const a = processDetails('bg');
    expect(a.typeUrl).toBe('containerd.runc.v1.ProcessDetails');
    expect(Buffer.from(a.value).toString('hex')).toBe('0a026267');
    const long = processDetails('x'.repeat(200));
    expect(Buffer.from(long.value).subarray(0, 3).toString('hex')).toBe('0ac801'); // length 200 as a two-byte varint
  });
});
