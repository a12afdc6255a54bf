#!/bin/sh
# Builds the seed guest (freestanding x86_64 ELF, loaded by engines/vm/elf.ts).
# Needs Debian's gcc/binutils only. Output: guest/build/seed.elf. Idempotent.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/build"
mkdir -p "$out"
CFLAGS="-O2 -ffreestanding -nostdlib -fno-pic -fno-pie -no-pie -mno-red-zone -mgeneral-regs-only \
 -fno-stack-protector -fno-asynchronous-unwind-tables -fno-builtin -static -mcmodel=small -Wall -Wextra"
gcc $CFLAGS -Wl,-T,"$here/link.ld" -Wl,--build-id=none -Wl,-z,max-page-size=4096 -Wl,-z,noexecstack \
  -o "$out/seed.elf.tmp" "$here/start.S" "$here/seed.c"
# the IDT and TSS descriptor in start.S hard-code these addresses
nm "$out/seed.elf.tmp" > "$out/seed.nm"
grep -q '^0000000000100000 T _start$' "$out/seed.nm" || { echo "guest: _start not at 0x100000" >&2; exit 1; }
mv "$out/seed.elf.tmp" "$out/seed.elf"
echo "$out/seed.elf"
