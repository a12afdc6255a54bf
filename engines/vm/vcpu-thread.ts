// The vCPU thread: the body of one pre-started worker_thread (engines/vm/vcpu-threads.ts
// starts it; sys/kvm.ts documents the control protocol). It runs KVM_RUN for whichever vCPU
// it is handed, handles serial and MMIO-console byte exits itself (one exit per byte; a round
// trip to the main thread each would dominate a guest's boot), and reports every other exit.
//
// States: starting (blocks SIG_KICK, reports tid and mask) → idle (Atomics.wait on CMD_SEQ)
// → running (KVM_RUN until an exit the monitor handles, or EINTR from a kick) → idle … → quit.
import { workerData } from 'node:worker_threads';
import koffi from 'koffi';
import { CTL, CTL_OP, EXIT, KVM, RUN_OFF, SERIAL_CAP, SERIAL_MMIO_ADDR, SERIAL_PORT, SIG_KICK, SIZES } from '../../sys/kvm.js';
import { blockSignals, gettid, ioctlRaw, pointerFromAddress, takePendingSignal } from '../../sys/libc.js';

/** What vcpu-threads.ts passes: the control words and the serial buffer, both shared. */
export interface VcpuThreadData { ctl: SharedArrayBuffer; serial: SharedArrayBuffer }

const EINTR = 4;

/** One KVM_RUN session: runs until an exit the monitor must see. Returns [rc, errno, serial bytes]. */
function runSession(fd: number, run: DataView, serial: Uint8Array): [number, number, number] {
  let slen = 0;
  for (;;) {
    const r = ioctlRaw(fd, KVM.RUN, 0);
    const rc = r < 0 ? -1 : r;
    const err = r < 0 ? -r : 0;
    ctl[CTL.RUNS]!++;
    if (rc < 0 && err === EINTR) {
      takePendingSignal([SIG_KICK]); // the kick stays pending (blocked here): consume it
      return [rc, err, slen];
    }
    if (rc === 0) {
      const reason = run.getUint32(RUN_OFF.EXIT_REASON, true);
      if (reason === EXIT.IO && run.getUint16(RUN_OFF.IO_PORT, true) === SERIAL_PORT && run.getUint8(RUN_OFF.IO_DIRECTION) === 1) {
        const size = run.getUint8(RUN_OFF.IO_SIZE);
        const count = run.getUint32(RUN_OFF.IO_COUNT, true);
        const off = Number(run.getBigUint64(RUN_OFF.IO_DATA_OFFSET, true));
        for (let i = 0; i < count && slen < SERIAL_CAP; i++) serial[slen++] = run.getUint8(off + i * size);
        continue;
      }
      if (reason === EXIT.MMIO && run.getBigUint64(RUN_OFF.MMIO_ADDR, true) === BigInt(SERIAL_MMIO_ADDR) && run.getUint8(RUN_OFF.MMIO_IS_WRITE) === 1) {
        if (slen < SERIAL_CAP) serial[slen++] = run.getUint8(RUN_OFF.MMIO_DATA);
        continue;
      }
    }
    return [rc, err, slen];
  }
}

const data = workerData as VcpuThreadData;
const ctl = new Int32Array(data.ctl);
const serial = new Uint8Array(data.serial);

const old = blockSignals([SIG_KICK]);
ctl[CTL.MASK_LO] = old.readInt32LE(0);
ctl[CTL.MASK_HI] = old.readInt32LE(4);
ctl[CTL.TID] = gettid();
Atomics.store(ctl, CTL.READY, 1);
Atomics.notify(ctl, CTL.READY);

let seen = 0;
let lastAddr = -1n;
let run: DataView | null = null;
for (;;) {
  Atomics.wait(ctl, CTL.CMD_SEQ, seen);
  seen = Atomics.load(ctl, CTL.CMD_SEQ);
  if (ctl[CTL.OP] === CTL_OP.QUIT) break;
  const fd = ctl[CTL.FD]!;
  const addr = BigInt(ctl[CTL.RUN_LO]! >>> 0) | (BigInt(ctl[CTL.RUN_HI]! >>> 0) << 32n);
  if (addr !== lastAddr || run === null) {
    // fd -1 with address 0 is the self-test (no KVM needed): no kvm_run area to view
    run = addr === 0n ? new DataView(new ArrayBuffer(SIZES.run)) : new DataView(koffi.view(pointerFromAddress(addr) as never, SIZES.run));
    lastAddr = addr;
  }
  const [rc, err, slen] = runSession(fd, run, serial);
  ctl[CTL.SERIAL_LEN] = slen;
  ctl[CTL.RC] = rc;
  ctl[CTL.ERRNO] = err;
  Atomics.store(ctl, CTL.DONE_SEQ, seen);
  Atomics.notify(ctl, CTL.DONE_SEQ);
}
