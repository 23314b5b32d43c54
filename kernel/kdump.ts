/**
 * kdump: a crash kernel waiting in memory reserved at boot, and the panic that jumps to it.
 *
 * - `crashkernel=SIZE[@OFFSET]` reserves the memory at boot (`reserveCrashkernel`, called from
 *   boot); the running kernel never hands it out.
 * - `kexecLoadCrash` loads the crash image into the reservation: the kexec loader writes an ELF
 *   core header there describing every range of the running kernel's memory outside the reservation
 *   (the dump), and gives the crash kernel a device tree whose /chosen says where its own memory is
 *   (`linux,usable-memory-range`) and where the header is (`linux,elfcorehdr`), as kexec-tools does.
 * - `panic` jumps to the crash kernel with no device shutdown at all: SMMUs stay enabled with the
 *   old kernel's tables, their queues run, and DMA masters carry on (kernel: panic() →
 *   __crash_kexec() → machine_crash_shutdown() → machine_kexec()).
 * - The crash kernel sees only its reservation as RAM, reads the header into `Kernel.vmcore`
 *   (kernel: parse_crash_elf64_headers()), and is a kdump kernel (is_kdump_kernel()): drivers that
 *   behave differently there (arm-smmu-v3 leaves the event and PRI queues off) ask `Kernel.isKdump`.
 *
 * Not modelled: the ELF notes (CPU registers, vmcoreinfo), `crashkernel=` range and ",high/,low"
 * forms, kexec_file_load's purgatory and signature checks. No image bytes are copied: the crash
 * kernel is this same code, and the first CRASH_IMAGE_SIZE bytes of the reservation stand for its
 * image (the crash kernel keeps them reserved). The hand-over goes through `kexec()`, so it takes
 * whatever virtual time a kexec hand-over takes.
 */
import { KernelError } from '../bus/errno.js';
import { parseFdt, writeFdt } from '../bus/of/fdt.js';
import type { DeviceTree } from '../bus/of/tree.js';
import type { MemoryRange, ReservedRange } from '../mm/page-alloc.js';
import { buildElfCoreHeader, CRASH_IMAGE_SIZE, type VmcoreSegment } from './crash-dump.js';
import { kexec } from './kexec.js';
import { runningKernel, type BootOptions, type BootTarget, type Kernel } from './kernel.js';

const LOG_NS = 'iommu:kernel:kdump';
const SZ_4G = 0x1_0000_0000;
const PAGE = 0x1000;

/** RAM ranges minus the holes: what the dump describes. */
function subtract(memory: readonly MemoryRange[], holes: readonly MemoryRange[]): VmcoreSegment[] {
  let out: VmcoreSegment[] = memory.map((m) => ({ paddr: m.base, size: m.size }));
  for (const h of holes) {
    const next: VmcoreSegment[] = [];
    for (const s of out) {
      const end = s.paddr + s.size;
      const hEnd = h.base + h.size;
      if (hEnd <= s.paddr || h.base >= end) {
        next.push(s);
        continue;
      }
      if (h.base > s.paddr) next.push({ paddr: s.paddr, size: h.base - s.paddr });
      if (hEnd < end) next.push({ paddr: hEnd, size: end - hEnd });
    }
    out = next;
  }
  return out;
}

// ---- loading and panicking ---------------------------------------------------------------------

/** What the crash kernel boots with (a subset of a kexec's boot options). */
export type CrashImageOptions = Omit<BootOptions, 'instance' | 'dtb'>;

/** A crash image loaded into the reservation, waiting for a panic. */
export interface CrashImage {
  readonly reservation: ReservedRange;
  /** The device tree the crash kernel boots from. */
  readonly dtb: Uint8Array;
  /** Where the ELF core header was written (inside the reservation). */
  readonly elfcorehdr: MemoryRange;
  readonly segments: readonly VmcoreSegment[];
  readonly boot: CrashImageOptions;
}

function cells(value: number, n: number): number[] {
  const out: number[] = [];
  let v = value;
  for (let i = 0; i < n; i++) {
    out.unshift(v % SZ_4G);
    v = Math.floor(v / SZ_4G);
  }
  return out;
}

function cellBytes(values: readonly number[]): Uint8Array {
  const b = new Uint8Array(values.length * 4);
  const dv = new DataView(b.buffer);
  values.forEach((c, i) => dv.setUint32(i * 4, c >>> 0, false));
  return b;
}

/** The crash kernel's device tree: the running one's, with /chosen pointing at its memory and the dump. */
function crashDeviceTree(dt: DeviceTree, reservation: MemoryRange, hdr: MemoryRange, cmdline: string): Uint8Array {
  const tree = parseFdt(writeFdt(dt));
  const chosen = tree.byPath('/chosen');
  if (!chosen) throw new KernelError('EINVAL', 'kexec: the device tree has no /chosen node to pass the crash kernel its memory');
  const ac = tree.root.addressCells;
  const sc = tree.root.sizeCells;
  chosen.properties.set('linux,usable-memory-range', cellBytes([...cells(reservation.base, ac), ...cells(reservation.size, sc)]));
  chosen.properties.set('linux,elfcorehdr', cellBytes([...cells(hdr.base, ac), ...cells(hdr.size, sc)]));
  chosen.properties.set('bootargs', new TextEncoder().encode(cmdline + '\0'));
  tree.invalidate();
  return writeFdt(tree);
}

/** The running kernel's command line without `crashkernel=` (a crash kernel reserves nothing). */
function crashCmdline(cmdline: string): string {
  return cmdline
    .split(/\s+/)
    .filter((a) => a !== '' && !/^crashkernel=/.test(a))
    .join(' ');
}

/**
 * Load a crash kernel into the running kernel's reservation (kernel: kexec_load() with
 * KEXEC_ON_CRASH). EADDRNOTAVAIL, as Linux answers when the image cannot lie inside crashk_res, if
 * nothing was reserved (naming the missing `crashkernel=`); ENOMEM if the reservation is too small.
 */
// kernel: do_kexec_load() [kexec.c]
export function kexecLoadCrash(kernel: Kernel, boot: CrashImageOptions = {}): CrashImage {
  const reservation = kernel.crashkernel;
  if (!reservation) {
    throw new KernelError('EADDRNOTAVAIL', `kexec: kernel ${kernel.instance} reserved no memory for a crash kernel (boot it with crashkernel=SIZE[@OFFSET])`);
  }
  if (kernel.state !== 'running') throw new KernelError('ESRCH', `kexec: kernel ${kernel.instance} is ${kernel.state}`);
  const segments = subtract(kernel.memory, [reservation]);
  const header = buildElfCoreHeader(segments);
  const hdr: MemoryRange = { base: reservation.base + CRASH_IMAGE_SIZE, size: Math.ceil(header.length / PAGE) * PAGE };
  if (hdr.base + hdr.size > reservation.base + reservation.size) {
    throw new KernelError('ENOMEM', `kexec: the ${reservation.size}-byte crash reservation has no room for the image and its ELF core header`);
  }
  kernel.port.ram.write(hdr.base, header);
  const cmdline = boot.cmdline ?? crashCmdline(kernel.cmdline);
  const image: CrashImage = {
    reservation,
    dtb: crashDeviceTree(kernel.dt, reservation, hdr, cmdline),
    elfcorehdr: hdr,
    segments,
    boot: { ...boot, cmdline },
  };
  kernel._setCrashImage(image);
  kernel.log.info('kernel', `kexec: crash kernel loaded at 0x${reservation.base.toString(16)} (${Math.floor(reservation.size / 2 ** 20)} MiB), ELF core header at 0x${hdr.base.toString(16)} with ${segments.length} segment(s)`, LOG_NS);
  return image;
}

/**
 * Panic the running kernel. With a crash image loaded, jump to it without shutting any device
 * down and return the crash kernel once it has booted; without one, the kernel stops where it is
 * (its devices keep running) and null is returned.
 */
// kernel: panic() [panic.c]
export async function panic(machine: BootTarget, reason: string): Promise<Kernel | null> {
  const old = runningKernel(machine.cpu);
  if (!old) throw new KernelError('ESRCH', 'panic: no kernel is running on this machine');
  old.log.err('kernel', `Kernel panic - not syncing: ${reason}`, LOG_NS);
  const image = old.crashImage;
  if (!image) {
    old._panicked();
    return null;
  }
  // kernel: __crash_kexec() → machine_crash_shutdown(): no .shutdown, no SMMU reset, DMA runs on.
  old.log.err('kernel', 'Starting crashdump kernel...', LOG_NS);
  return kexec(machine, { ...image.boot, dtb: image.dtb, skipShutdown: true });
}
