/* CPL0 part of the seed guest. The monitor enters _start in 64-bit mode with identity-mapped
 * 2 MiB pages (U/S set, A/D preset) and interrupts off. Everything at CPL0 is emulated on PVM
 * hosts (~0.6 us/instruction), so this only loads GDT/IDT/TSS and drops to CPL3. */
#include "abi.h"
        .section .text.boot, "ax"
        .code64
        .globl _start
_start:
        lgdt    gdt_ptr(%rip)
        lidt    idt_ptr(%rip)
        mov     $0x28, %ax
        ltr     %ax
        /* drop to CPL3. IOPL stays 0: on PVM hosts CPL3 runs with IOPL forced to 0 (measured:
         * with IOPL=3 pushed by iretq, or set by KVM_SET_REGS, the CPL3 frame shows RFLAGS
         * 0x10006 and OUT raises #GP), so CPL3 talks to the monitor only through MMIO. */
        pushq   $0x23                   /* user SS (0x20 | RPL3) */
        movabsq $user_stack_top, %rax
        pushq   %rax
        pushq   $0x0002                 /* RFLAGS: IF=0 */
        pushq   $0x1b                   /* user CS (0x18 | RPL3) */
        movabsq $user_main, %rax
        pushq   %rax
        iretq

/* Exception stubs at 0x101000 + 32*n: report vector/error/rip/cs/cr2 on PORT_EXCEPTION and
 * stop for good (the monitor turns this into a GuestFault error and never resumes). */
        .section .text.exc, "ax"
        .macro EXC n, err
        .balign 32
        .if \err == 0
        pushq $0
        .endif
        pushq $\n
        jmp exc_common
        .endm
        EXC 0,0; EXC 1,0; EXC 2,0; EXC 3,0; EXC 4,0; EXC 5,0; EXC 6,0; EXC 7,0
        EXC 8,1; EXC 9,0; EXC 10,1; EXC 11,1; EXC 12,1; EXC 13,1; EXC 14,1; EXC 15,0
        EXC 16,0; EXC 17,1; EXC 18,0; EXC 19,0; EXC 20,0; EXC 21,1
        .balign 32
exc_common:
        movq    (%rsp), %rax            /* vector */
        movq    8(%rsp), %rbx           /* error code */
        movq    16(%rsp), %rcx          /* rip */
        movq    24(%rsp), %rsi          /* cs */
        movq    32(%rsp), %r8           /* rflags */
        movq    %cr2, %rdi
        movw    $PORT_EXCEPTION, %dx
        outl    %eax, %dx
1:      hlt
        jmp     1b

        .section .bootdata, "aw"
gdt:    .quad 0                         /* 0x102000 */
        .quad 0x00af9a000000ffff        /* 0x08 kernel code 64 */
        .quad 0x00cf92000000ffff        /* 0x10 kernel data */
        .quad 0x00affa000000ffff        /* 0x18 user code 64 (DPL3) */
        .quad 0x00cff2000000ffff        /* 0x20 user data (DPL3) */
        .quad 0x0000891021000067        /* 0x28 TSS @0x102100, limit 0x67, available 64-bit */
        .quad 0
gdt_end:
gdt_ptr: .word gdt_end - gdt - 1
        .quad 0x102000
idt_ptr: .word 22*16 - 1
        .quad 0x102200
        .balign 256
tss:    .long 0                         /* 0x102100 */
        .quad 0x104000                  /* rsp0: top of the kernel stack below */
        .fill 22, 4, 0
        .word 0, 104                    /* I/O map base beyond the limit: no bitmap */
        .balign 512
idt:                                    /* 0x102200: interrupt gates, selector 0x08, DPL0 */
        .set n, 0
        .rept 22
        .quad (0x10 << 48) | (0x8E << 40) | (0x08 << 16) | (0x1000 + n * 32)
        .quad 0
        .set n, n + 1
        .endr
        .balign 4096
kstack: .fill 4096, 1, 0                /* 0x103000..0x104000 */

        .section .bss
        .balign 4096
        .fill 65536, 1, 0
        .globl user_stack_top
user_stack_top:
