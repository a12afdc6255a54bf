// Mirror of guest/abi.h: the contract between the monitor and spore's seed guest.
export const GUEST_MEM_SIZE = 16 << 20;
export const VIRTIO_MMIO_BASE = 0x1000_0000n;
export const VIRTIO_MMIO_SIZE = 0x200n;
export const PORT_SERIAL = 0x3f8;
/** Console from CPL3 (IOPL is forced to 0 at CPL3 on PVM, so no port I/O there). */
export const SERIAL_MMIO = 0x1000_1000n;
export const PORT_PROBE = 0x500;
export const PORT_EXCEPTION = 0x502;
export const VQ_RX = 0;
export const VQ_TX = 1;
export const VQ_SIZE_MAX = 256;
export const MSG = { READY: 1, ENTROPY: 2, REQUEST: 3, RESPONSE: 4 } as const;
export const OP = { COMPUTE: 0, POKE: 1, PEEK: 2, FAULT: 3, SPIN: 4, WILD_WRITE: 5, HLT: 6 } as const;
export const TABLE_WORDS = 1 << 20;
/** Boot page tables built by the monitor (Firecracker-style), below the ELF at 1 MiB. */
export const PML4_GPA = 0x9000;
export const PDPT_GPA = 0xa000;
export const PD_GPA = 0xb000;
export const BOOT_STACK_GPA = 0x8000;
export const TSS_ADDR = 0xfffb_d000;
