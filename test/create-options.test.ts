// CreateTaskRequest.options (task/service.ts createOptions): the CRI handler's
// runtimeoptions.v1.Options are read; runc's CreateOptions, which `ctr run --uidmap` sends,
// are not needed (spored relays stdio) and pass quietly; any other type is a warning; a body
// that does not decode is InvalidArgument.
import { create, toBinary } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import { OptionsSchema } from '../fri-proto/gen/runtimeoptions/v1/api_pb.js';
import { InvalidArgument } from '../sys/errors.js';
import { createOptions } from '../task/service.js';

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

  it('runc\'s CreateOptions (ctr run --uidmap: the stdio FIFOs\' owner) pass without a warning', () => {
    const r = recorder();
    // io_uid = 100000 (field 8), io_gid = 100000 (field 9), as ctr sends them
    const value = Buffer.from([0x40, 0xa0, 0x8d, 0x06, 0x48, 0xa0, 0x8d, 0x06]);
    expect(createOptions({ typeUrl: 'containerd.linux.runc.CreateOptions', value } as never, r.log)).toEqual({});
    expect(r.lines.map(([level]) => level)).toEqual(['debug']);
  });

  it('another type is ignored with a warning; options that do not decode are InvalidArgument', () => {
    const r = recorder();
    expect(createOptions({ typeUrl: 'example.com/Other', value: Buffer.from([1, 2]) } as never, r.log)).toEqual({});
    expect(r.lines).toEqual([['warn', 'CreateTask options of a type spore does not read; ignored']]);
    expect(() => createOptions({ typeUrl: OptionsSchema.typeName, value: Buffer.from([0x0a, 0x05, 0x61]) } as never, r.log)).toThrow(InvalidArgument);
  });
});
