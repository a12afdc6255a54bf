// Facts of containerd's shim v2 Task API that spore answers with, shared by spored's Task
// service (task/service.ts) and the keeper, which answers a few calls itself when spored
// does not (keeper/stand-in.ts). Source: containerd/api/runtime/task/v2/shim.proto and the
// runc shim (containerd/runtime/v2/runc/options, ProcessDetails).
import { create } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';

/** the ttrpc service name of the shim v2 Task API */
export const TASK_SERVICE = 'containerd.task.v2.Task';

/** the version Connect reports (ConnectResponse.version) */
export const SPORE_VERSION = '0.1.0';

/**
 * Pids' ProcessInfo.info for an exec's process: containerd.runc.v1.ProcessDetails{exec_id=1},
 * as the runc shim sends it (ctr task ps shows the exec id from it).
 */
export function processDetails(execId: string): Any {
  return create(AnySchema, { typeUrl: 'containerd.runc.v1.ProcessDetails', value: new BinaryWriter().tag(1, WireType.LengthDelimited).string(execId).finish() });
}
