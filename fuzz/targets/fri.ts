// Fuzz target 2: FRI requests (protocols/fri/server.ts, convert.ts, validate.ts, grpc.ts) on the
// in-memory FakeRuntime (test/fake-runtime.ts): protobuf bytes -> the method's request message
// (the deserializer grpc-js is given) -> the handler (conversion, validation) -> the status or
// the response message grpc-js would send. No socket, no real runtime.
//
// Input: [method selector byte][the request message bytes].
//
// Acceptable (anything else is a finding):
//  - the bytes decode, the handler runs and the response serializes and decodes again; or
//  - the call fails with a status that a SporeError mapped (statusOf): never UNKNOWN (an
//    untyped error escaped) and never INTERNAL (no internal failure exists in the fake), and
//    with a message; bytes that do not decode are the caller's mistake (INVALID_ARGUMENT),
//    not grpc-js's "Error deserializing request" INTERNAL;
//  - a spec that Deploy accepted is a fixpoint of validateFunctionSpec;
//  - all within the per-input deadline.
import { fromBinary } from '@bufbuild/protobuf';
import type { DescMethod } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import { Code } from '../../sys/errors.js';
import { FunctionRuntime as FunctionRuntimeService } from '../../fri-proto/gen/spore/fri/v1/fri_pb.js';
import { friHandlers } from '../../protocols/fri/server.js';
import { serviceDefinition, serviceImplementation } from '../../protocols/fri/grpc.js';
import { validateFunctionSpec } from '../../protocols/fri/validate.js';
import type { FunctionSpec } from '../../protocols/fri/types.js';
import { FakeRuntime } from '../../test/fake-runtime.js';
import { FuzzFinding, INPUT_DEADLINE_MS, codeName, describe, withDeadline, keepGoing } from '../lib/oracle.js';

const METHODS: DescMethod[] = FunctionRuntimeService.methods;
const DEFINITION = serviceDefinition(FunctionRuntimeService);

/** A runtime with something in it: a root, a language seed, an instance, four functions. */
async function populated(): Promise<FakeRuntime> {
  const rt = new FakeRuntime();
  const root = await rt.create('process');
  const l1 = await rt.fork(root.id, { kind: 'seed', language: 'node' });
  await rt.fork(l1.id, { kind: 'instance' });
  const base = { language: 'node' as const, handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: { A: '1' } };
  for (const [name, code] of [['echo', 'echo'], ['throws', 'throw'], ['slow', 'timeout'], ['big', 'oom']] as const) {
    await rt.deploy({ ...base, name, code });
  }
  rt.logText.set('echo', 'line 1\nline 2\n');
  rt.calls.length = 0;
  return rt;
}

type Outcome = { err: grpc.ServiceError | null; value: unknown };

export const fuzz = keepGoing(fuzzOne);

async function fuzzOne(data: Buffer): Promise<void> {
  const method = METHODS[(data[0] ?? 0) % METHODS.length] as DescMethod;
  const bytes = data.subarray(1);
  const def = DEFINITION[method.localName] as grpc.MethodDefinition<unknown, unknown>;

  let request: unknown;
  try {
    request = def.requestDeserialize(bytes);
  } catch (e) {
    // grpc-js answers a throwing deserializer with INTERNAL "Error deserializing request".
    throw new FuzzFinding(`${method.name}: request bytes that do not decode make the deserializer throw (grpc-js answers INTERNAL, not INVALID_ARGUMENT): ${describe(e)}`, { cause: e });
  }

  const rt = await populated();
  const impl = serviceImplementation(FunctionRuntimeService, friHandlers(rt))[method.localName] as grpc.handleUnaryCall<unknown, unknown>;
  const outcome = await withDeadline(new Promise<Outcome>((resolve) => {
    const call = { request } as grpc.ServerUnaryCall<unknown, unknown>;
    impl(call, (err, value) => resolve({ err: (err as grpc.ServiceError | null) ?? null, value }));
  }), INPUT_DEADLINE_MS, `FRI ${method.name}`);

  if (outcome.err) {
    const { code, details } = outcome.err;
    if (typeof code !== 'number' || code <= 0 || code > 16) throw new FuzzFinding(`${method.name}: status code ${String(code)}`);
    if (code === Code.UNKNOWN) throw new FuzzFinding(`${method.name}: UNKNOWN (an untyped error escaped the handler): ${details}`);
    if (code === Code.INTERNAL) throw new FuzzFinding(`${method.name}: INTERNAL: ${details}`);
    if (!details) throw new FuzzFinding(`${method.name}: ${codeName(code)} without a message`);
    return;
  }

  let wire: Buffer;
  try {
    wire = def.responseSerialize(outcome.value);
    fromBinary(method.output, wire);
  } catch (e) {
    throw new FuzzFinding(`${method.name}: the response does not serialize and decode: ${describe(e)}`, { cause: e });
  }
  if (method.localName === 'deploy') {
    const deployed = rt.calls.find((c) => c.method === 'deploy')?.args[0] as FunctionSpec | undefined;
    if (!deployed) throw new FuzzFinding('Deploy answered OK without deploying');
    let again: FunctionSpec;
    try {
      again = validateFunctionSpec({ ...deployed, package: deployed.package ?? null });
    } catch (e) {
      throw new FuzzFinding(`Deploy accepted a spec that validateFunctionSpec rejects when given it again: ${describe(e)}`, { cause: e });
    }
    const a = JSON.stringify({ ...again, package: again.package ? toHex(again.package.data) : null });
    const b = JSON.stringify({ ...deployed, package: deployed.package ? toHex(deployed.package.data) : null });
    if (a !== b) throw new FuzzFinding(`validateFunctionSpec is not idempotent: ${b} -> ${a}`);
  }
}

function toHex(u: Uint8Array): string {
  return Buffer.from(u).toString('hex');
}
