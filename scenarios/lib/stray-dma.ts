/**
 * Stray-DMA detection: every DMA write that lands in RAM is checked against the running kernel's
 * frame owners. A write by master X into a frame that is not a DMA buffer of X, nor mapped for X by
 * the running kernel, is a stray write. "Mapped for X" (`devPhysIsReachable`): through the DMA API
 * (directly or through its IOMMU domain), through `iommu_map` into an UNMANAGED domain attached to
 * X's group (RID or PASID), or as a page of a process whose address space is bound to X (SVA).
 * After a kexec the monitor follows the new kernel (from the moment its boot starts), so a stale
 * engine of the old kernel scribbling on memory the new one handed out shows up here.
 * Not consulted: the identity mappings of firmware DIRECT regions inside a DMA domain.
 *
 * It lives on the lab bench because it holds both worlds: the machine's interconnect (where writes
 * land) and the kernel's allocator (who owns what).
 */
import type { Device } from '../../bus/device.js';
import { devPhysIsReachable } from '../../core/dma-mapping.js';
import type { Machine } from '../../hw/machine.js';
import { runningKernel, type Kernel } from '../../kernel/kernel.js';
import { describeOwner, type FrameOwner } from '../../mm/page-alloc.js';

const FRAME = 0x1000;

export interface StrayWrite {
  /** Virtual time (ns) the write landed. */
  time: number;
  /** The master's DT path. */
  master: string;
  pa: number;
  len: number;
  /** The frame's owner as the kernel's allocator describes it ("free", "dma /dma@… rx-ring", …). */
  owner: string;
  /** Which kernel instance owned the frame (the one running when the write landed); -1 when none was. */
  kernel: number;
}

const NO_KERNEL = 'memory of no running kernel';

/** What a frame outside the kernel's RAM is: a crash kernel's dump, or nothing it knows. */
function unknownRam(k: Kernel, frame: number): string {
  const inDump = k.vmcore?.some((v) => frame >= v.paddr && frame < v.paddr + v.size) ?? false;
  return inDump ? 'vmcore (crashed kernel memory)' : 'not RAM the kernel knows';
}

export class StrayDmaMonitor {
  readonly strays: StrayWrite[] = [];
  private readonly devices = new WeakMap<Kernel, Map<string, Device>>();
  private readonly stop: () => void;

  constructor(private readonly machine: Machine) {
    this.stop = machine.interconnect.onRamWrite((master, pa, len, time) => this.check(master, pa, len, time));
  }

  dispose(): void {
    this.stop();
  }

  /** The kernel's device for a master (a PCI function's name differs from its DT path), or null. */
  private device(k: Kernel, master: string): Device | null {
    let devs = this.devices.get(k);
    if (!devs) {
      devs = new Map();
      this.devices.set(k, devs);
    }
    let dev = devs.get(master);
    if (dev === undefined) {
      const node = k.dt.byPath(master);
      dev = node ? k.core.findDeviceByOfNode(node) : undefined;
      if (!dev) return null; // not (yet) a device of this kernel: ask again next time
      devs.set(master, dev);
    }
    return dev;
  }

  /**
   * Whether a write of `master` at [pa, pa+len) strays right now: null if every frame is the
   * master's own, else the owner of the first frame that is not (as a stray record would name it).
   */
  classify(master: string, pa: number, len: number): string | null {
    const k = runningKernel(this.machine.cpu);
    if (!k) return NO_KERNEL;
    const dev = this.device(k, master);
    const name = dev?.name ?? master;
    for (let f = Math.floor(pa / FRAME) * FRAME; f < pa + len; f += FRAME) {
      const own = k.alloc.ownerOf(f);
      if (!own) return unknownRam(k, f);
      if (!this.reachable(own.owner, f, dev, name)) return describeOwner(own.owner);
    }
    return null;
  }

  private check(master: string, pa: number, len: number, time: number): void {
    // The kernel that owns memory right now: the one booting or running on the machine.
    const k = runningKernel(this.machine.cpu);
    if (!k) {
      // Between kernels (a hand-over, a failed boot): nobody owns anything, every write strays.
      this.record(time, master, pa, pa + len, NO_KERNEL, -1);
      return;
    }
    const dev = this.device(k, master);
    const name = dev?.name ?? master;
    // One record per run of frames with the same owner: a 64 KiB write into one buffer is one line.
    let runStart = pa;
    let runOwner: string | null = null;
    const end = pa + len;
    for (let f = Math.floor(pa / FRAME) * FRAME; f < end; f += FRAME) {
      const own = k.alloc.ownerOf(f);
      const stray = !own || !this.reachable(own.owner, f, dev, name);
      const label = stray ? (own ? describeOwner(own.owner) : unknownRam(k, f)) : null;
      if (label !== runOwner) {
        if (runOwner !== null) this.record(time, master, runStart, Math.max(runStart, f), runOwner, k.instance);
        runStart = Math.max(pa, f);
        runOwner = label;
      }
    }
    if (runOwner !== null) this.record(time, master, runStart, end, runOwner, k.instance);
  }

  /** The frame is a DMA buffer of the device, or the kernel mapped it for the device. */
  private reachable(owner: FrameOwner, frame: number, dev: Device | null, name: string): boolean {
    if (owner.kind === 'dma' && owner.device === name) return true;
    return dev !== null && devPhysIsReachable(dev, frame);
  }

  private record(time: number, master: string, from: number, to: number, owner: string, kernel: number): void {
    const w: StrayWrite = { time, master, pa: from, len: to - from, owner, kernel };
    this.strays.push(w);
    if (this.machine.trace.active) {
      this.machine.trace.emit({ kind: 'custom', time, track: master, name: 'stray-write', args: { ...w } });
    }
  }
}
