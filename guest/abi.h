/* Guest <-> monitor ABI of spore's seed guest. Mirrored in engines/vm/abi.ts. */
#pragma once
#define GUEST_LOAD_ADDR   0x100000UL   /* ELF is linked here (1 MiB) */
#define GUEST_MEM_SIZE    (16UL << 20)
#define VIRTIO_MMIO_BASE  0x10000000UL /* unbacked GPA inside the 2 MiB identity map -> MMIO exits */
#define PORT_SERIAL       0x3f8        /* COM1 THR: one byte per OUT (CPL0 only) */
#define SERIAL_MMIO       0x10001000UL /* 32-bit write of one byte: console output from CPL3 */
#define PORT_PROBE        0x500        /* OUT of a 32-bit value: probe/debug (CPL0 only) */
#define PORT_EXCEPTION    0x502        /* CPL0 exception stub: eax=vector rbx=err rcx=rip rsi=cs rdi=cr2 */
#define VQ_SIZE           16
#define VQ_RX             0            /* host -> guest */
#define VQ_TX             1            /* guest -> host */
#define BUF_SIZE          4096
#define MSG_READY         1
#define MSG_ENTROPY       2            /* 32 random bytes + u64 instance id */
#define MSG_REQUEST       3
#define MSG_RESPONSE      4
#define OP_COMPUTE        0
#define OP_POKE           1            /* u32 index, u32 value: table[index] = value, returns old */
#define OP_PEEK           2
#define OP_FAULT          3            /* ud2 at CPL3 */
#define OP_SPIN           4            /* loop forever at CPL3 */
#define OP_WILD_WRITE     5            /* write to an unbacked, non-device GPA */
#define OP_HLT            6            /* hlt at CPL3 (#GP natively) */
#define TABLE_WORDS       (1UL << 20)  /* 4 MiB table of u32 */
