/**
 * Crash-dump memory, as early boot sees it: where `crashkernel=` is placed, and the ELF core header
 * through which a crash kernel learns what the crashed kernel's memory was (the dump). Used by boot
 * (memblock) and by the kexec loader (`kdump.ts`).
 */
import type { RamAccess } from '../hw/cpu-port.js';
import type { MemoryRange, ReservedRange } from '../mm/page-alloc.js';
import type { CrashKernelSpec } from './cmdline.js';

const SZ_2M = 0x20_0000;
const SZ_4G = 0x1_0000_0000;
const PAGE = 0x1000;

/** arm64 places a crash kernel on a 2 MiB boundary (CRASH_ALIGN). */
export const CRASH_ALIGN = SZ_2M;
/** How much of the reservation the loaded crash kernel image occupies (its text and data). */
export const CRASH_IMAGE_SIZE = SZ_2M;

/**
 * Place the reservation: at OFFSET if given (it must lie in RAM, clear of other reservations), else
 * the highest CRASH_ALIGN-aligned fit below 4 GiB, then anywhere (kernel: arch_reserve_crashkernel()
 * → reserve_crashkernel_generic()). Returns the range, or a reason it could not be placed.
 */
// kernel: reserve_crashkernel_generic() [crash_reserve.c]
export function reserveCrashkernel(
  spec: CrashKernelSpec,
  memory: readonly MemoryRange[],
  taken: readonly ReservedRange[],
): ReservedRange | { error: string } {
  const size = Math.ceil(spec.size / PAGE) * PAGE;
  const free = (b: number): boolean =>
    memory.some((m) => b >= m.base && b + size <= m.base + m.size) && !taken.some((t) => b < t.base + t.size && t.base < b + size);
  if (spec.offset !== null) {
    if (spec.offset % PAGE !== 0) return { error: `crashkernel offset 0x${spec.offset.toString(16)} is not page aligned` };
    if (!free(spec.offset)) {
      return { error: `crashkernel=0x${size.toString(16)}@0x${spec.offset.toString(16)} is not free RAM (outside RAM or over a reservation)` };
    }
    return { base: spec.offset, size, name: 'crashkernel' };
  }
  for (const limit of [SZ_4G, Number.MAX_SAFE_INTEGER]) {
    for (const m of [...memory].sort((a, b) => b.base - a.base)) {
      const hi = Math.min(m.base + m.size, limit);
      for (let b = Math.floor((hi - size) / CRASH_ALIGN) * CRASH_ALIGN; b >= m.base; b -= CRASH_ALIGN) {
        if (free(b)) return { base: b, size, name: 'crashkernel' };
      }
    }
  }
  return { error: `no room for a 0x${size.toString(16)}-byte crash kernel reservation` };
}

// ---- the ELF core header ---------------------------------------------------------------------

const ELF_HDR = 64;
const PHDR = 56;
const ET_CORE = 4;
const EM_AARCH64 = 183;
const PT_LOAD = 1;

/** One PT_LOAD of the dump: a range of the crashed kernel's physical memory. */
export interface VmcoreSegment {
  readonly paddr: number;
  readonly size: number;
}

/** Bytes of an ELF64 little-endian core header with one PT_LOAD per segment. */
// kernel: crash_prepare_elf64_headers() [crash_core.c]
export function buildElfCoreHeader(segments: readonly VmcoreSegment[]): Uint8Array {
  const out = new Uint8Array(ELF_HDR + PHDR * segments.length);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2 /* ELFCLASS64 */, 1 /* LSB */, 1 /* EV_CURRENT */], 0);
  dv.setUint16(16, ET_CORE, true);
  dv.setUint16(18, EM_AARCH64, true);
  dv.setUint32(20, 1, true);
  dv.setBigUint64(32, BigInt(ELF_HDR), true); // e_phoff
  dv.setUint16(52, ELF_HDR, true); // e_ehsize
  dv.setUint16(54, PHDR, true); // e_phentsize
  dv.setUint16(56, segments.length, true); // e_phnum
  segments.forEach((s, i) => {
    const o = ELF_HDR + i * PHDR;
    dv.setUint32(o, PT_LOAD, true);
    dv.setUint32(o + 4, 0x7, true); // RWX
    dv.setBigUint64(o + 8, BigInt(s.paddr), true); // p_offset: where /proc/vmcore reads it
    dv.setBigUint64(o + 24, BigInt(s.paddr), true); // p_paddr
    dv.setBigUint64(o + 32, BigInt(s.size), true); // p_filesz
    dv.setBigUint64(o + 40, BigInt(s.size), true); // p_memsz
  });
  return out;
}

/** Read the header the loader left; throws an Error naming what is wrong. */
// kernel: parse_crash_elf64_headers() [vmcore.c]
export function parseElfCoreHeader(ram: RamAccess, addr: number, size: number): VmcoreSegment[] {
  if (size < ELF_HDR) throw new Error(`elfcorehdr at 0x${addr.toString(16)}: ${size} bytes is shorter than an ELF header`);
  const b = ram.read(addr, Math.min(size, ELF_HDR));
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b[0] !== 0x7f || b[1] !== 0x45 || b[2] !== 0x4c || b[3] !== 0x46) throw new Error(`elfcorehdr at 0x${addr.toString(16)}: no ELF magic`);
  if (b[4] !== 2 || b[5] !== 1) throw new Error(`elfcorehdr at 0x${addr.toString(16)}: not ELF64 little-endian`);
  if (dv.getUint16(16, true) !== ET_CORE) throw new Error(`elfcorehdr at 0x${addr.toString(16)}: not an ET_CORE file`);
  const phoff = Number(dv.getBigUint64(32, true));
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  if (phentsize !== PHDR) throw new Error(`elfcorehdr at 0x${addr.toString(16)}: e_phentsize ${phentsize}, expected ${PHDR}`);
  if (phoff + phnum * PHDR > size) throw new Error(`elfcorehdr at 0x${addr.toString(16)}: ${phnum} program headers run past its ${size} bytes`);
  const ph = ram.read(addr + phoff, phnum * PHDR);
  const pv = new DataView(ph.buffer, ph.byteOffset, ph.byteLength);
  const out: VmcoreSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = i * PHDR;
    if (pv.getUint32(o, true) !== PT_LOAD) continue;
    out.push({ paddr: Number(pv.getBigUint64(o + 24, true)), size: Number(pv.getBigUint64(o + 40, true)) });
  }
  return out;
}

