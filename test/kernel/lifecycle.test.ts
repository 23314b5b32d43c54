import { describe, expect, it } from 'vitest';
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import { pciHostGenericDriver } from '../../bus/pci/host-generic.js';
import { platformBus, type PlatformDriver } from '../../bus/platform.js';
import { dmaUsesIommu } from '../../core/dma-mapping.js';
import { findTestEngine } from '../../drivers/misc/dma-test-engine.js';
import { bootKernel, runningKernel } from '../../kernel/kernel.js';
import { KEXEC_HANDOVER_DELAY_NS, kexec } from '../../kernel/kexec.js';
import { boot, run, virtMachine } from '../../scenarios/lib/lab.js';
import { VIRT } from '../../scenarios/machines/virt.js';
import { expectErrno } from '../lib/errno.js';

/** Drivers that record their shutdown calls, for the virt machine's SMMUs and test engines. */
function recordingDrivers(log: string[], opts: { engineShutdown: boolean }): PlatformDriver[] {
  const smmu: PlatformDriver = {
    name: 'fake-smmu',
    bus: platformBus,
    ofMatchTable: ['arm,smmu-v3', 'arm,mmu-500'],
    probe: async () => {},
    shutdown: (dev: Device) => {
      log.push(`smmu ${dev.name}`);
    },
  };
  const engine: PlatformDriver = {
    name: 'fake-engine',
    bus: platformBus,
    ofMatchTable: ['iommu-sim,dma-test-engine'],
    probe: async () => {},
    ...(opts.engineShutdown ? { shutdown: (dev: Device) => void log.push(`engine ${dev.name}`) } : {}),
  };
  return [smmu, engine];
}

describe('kernel lifecycle', () => {
  it('boots from the DTB the machine was built from, with its RAM and reservations', async () => {
    const machine = virtMachine({ seed: 3 });
    const kernel = await boot(machine);
    expect(kernel.instance).toBe(0);
    expect(kernel.state).toBe('running');
    expect(runningKernel(machine.cpu)).toBe(kernel);
    expect(kernel.alloc.ownerOf(VIRT.firmwareReserved.base)?.owner).toEqual({ kind: 'reserved', name: '/reserved-memory/firmware@7ff00000' });
    expect(kernel.alloc.ownerOf(VIRT.dtbReserved.base)?.owner.kind).toBe('reserved');
    expect(kernel.alloc.ownerOf(VIRT.ramBase + VIRT.ramSize - 0x1000)?.owner.kind).toBe('free');
    expect(kernel.alloc.ownerOf(VIRT.ramBase + VIRT.ramSize)).toBeNull();
  });

  it('never hands out the memreserve entry or /reserved-memory, even when RAM runs out', async () => {
    const machine = virtMachine({ seed: 3 });
    const kernel = await boot(machine);
    const { alloc } = kernel;
    expect(alloc.usage().reserved).toEqual([
      { name: 'memreserve[0]', base: VIRT.dtbReserved.base, size: VIRT.dtbReserved.size },
      { name: '/reserved-memory/firmware@7ff00000', base: VIRT.firmwareReserved.base, size: VIRT.firmwareReserved.size },
    ]);
    // Exhaust RAM: 2 MiB blocks while there are any, then single pages.
    for (const order of [9, 0]) {
      for (;;) {
        try {
          alloc.allocPages(order, { kind: 'kernel', what: 'exhaust' });
        } catch (e) {
          expect(e).toBeInstanceOf(KernelError);
          expect((e as KernelError).errno).toBe('ENOMEM');
          break;
        }
      }
    }
    expect(alloc.freeBytes).toBe(0);
    const reserved = [VIRT.dtbReserved, VIRT.firmwareReserved];
    const allocs = alloc.allocations();
    for (const a of allocs) {
      for (const r of reserved) expect(a.pa + a.size <= r.base || a.pa >= r.base + r.size).toBe(true);
    }
    // Everything else was handed out: allocations plus reservations cover all of RAM.
    expect(allocs.reduce((n, a) => n + a.size, 0)).toBe(VIRT.ramSize - VIRT.dtbReserved.size - VIRT.firmwareReserved.size);
  });

  it('takes the command line from /chosen/bootargs, warns about unknown parameters', async () => {
    const machine = virtMachine({ seed: 1, bootargs: 'iommu.strict=1 quiet' });
    const kernel = await boot(machine);
    expect(kernel.cmdline).toBe('iommu.strict=1 quiet');
    expect(kernel.params['iommu.strict']).toBe(true);
    expect(kernel.log.entries.some((e) => e.level === 'warn' && e.message === 'Unknown kernel command line parameters "quiet", will be passed to user space.')).toBe(true);
  });

  it('rejects a bad command-line value before touching any device', async () => {
    const machine = virtMachine({ seed: 1 });
    await expect(boot(machine, { cmdline: 'iommu.passthrough=perhaps' })).rejects.toThrow(/iommu\.passthrough/);
    expect(runningKernel(machine.cpu)).toBeNull();
  });

  it('refuses to boot a second kernel while one runs', async () => {
    const machine = virtMachine({ seed: 1 });
    await boot(machine);
    await expect(run(machine, bootKernel(machine))).rejects.toThrow(KernelError);
  });

  it('shutdown calls .shutdown in reverse probe order, masters before their SMMU, skipping absent ones', async () => {
    const machine = virtMachine({ seed: 5 });
    const calls: string[] = [];
    // Only the recording drivers (and the PCI host): the real SMMU drivers have tests of their own.
    const kernel = await boot(machine, { drivers: [pciHostGenericDriver, ...recordingDrivers(calls, { engineShutdown: true })] });
    const report = await run(machine, kernel.shutdown());
    const smmuV3 = calls.indexOf('smmu /iommu@9050000');
    const mmu500 = calls.indexOf('smmu /iommu@b000000');
    expect(smmuV3).toBeGreaterThan(calls.indexOf('engine /dma@c000000'));
    expect(smmuV3).toBeGreaterThan(calls.indexOf('engine /dma@c010000'));
    expect(mmu500).toBeGreaterThan(calls.indexOf('engine /dma@c020000'));
    expect(mmu500).toBeGreaterThan(calls.indexOf('engine /dma@c030000'));
    expect(report.called).toHaveLength(7);
    // pci-host-generic has no .shutdown: skipped, as Linux skips drivers without one.
    expect(report.skipped).toContain('/pcie@3f000000');
    expect(kernel.state).toBe('shut-down');
  });

  it('with the real SMMU drivers too: every master is shut down before the SMMU it sits behind', async () => {
    const machine = virtMachine({ seed: 6 });
    const kernel = await boot(machine);
    const report = await run(machine, kernel.shutdown());
    const at = (name: string): number => {
      const i = report.called.indexOf(name);
      expect(i, name).toBeGreaterThanOrEqual(0);
      return i;
    };
    for (const [smmu, masters] of [
      ['/iommu@9050000', ['/dma@c000000', '/dma@c010000']],
      ['/iommu@b000000', ['/dma@c020000', '/dma@c030000']],
    ] as const) {
      for (const m of masters) expect(at(m)).toBeLessThan(at(smmu));
    }
    expect(report.errors).toEqual([]);
  });

  it('kexec: memory and device state persist, the new kernel starts with a fresh allocator', async () => {
    const machine = virtMachine({ seed: 9 });
    const first = await boot(machine);
    const pa = first.alloc.allocPages(0, { kind: 'kernel', what: 'old buffer' }, { zero: true });
    machine.cpu.ram.write32(pa, 0xdeadbeef);
    const second = await run(machine, kexec(machine));
    expect(first.state).toBe('gone');
    expect(second.instance).toBe(1);
    expect(runningKernel(machine.cpu)).toBe(second);
    expect(machine.cpu.ram.read32(pa)).toBe(0xdeadbeef);
    expect(second.alloc.ownerOf(pa)).toEqual({ owner: { kind: 'free' }, kernelInstance: 1 });
    expect(first.alloc.ownerOf(pa)?.owner).toEqual({ kind: 'kernel', what: 'old buffer' });
    // The old kernel's devices are not the new kernel's.
    expect(second.core.devices.every((d) => !first.core.devices.includes(d))).toBe(true);
  });

  it('kexec into an IOMMU-unaware kernel: no SMMU is bound, a running engine and its registers carry over, the old IRQ handler is gone', async () => {
    const machine = virtMachine({ seed: 7 });
    const first = await boot(machine, { testEngineShutdown: false });
    const old = findTestEngine(first.core, '/dma@c040000');
    const buf = await run(machine, old.allocBuffer(0x10_0000, 'fill target'));
    // A 1 MiB fill that is still running when the kexec happens; it interrupts when it ends.
    const frame = old.start({ op: 'fill', dst: buf.dma, len: 0x10_0000, byte: 0xa5 }, { frame: 3 });
    const irqsBefore = old.irqCount;
    // An immediate hand-over, so the fill is still running when the new kernel probes the engine.
    const second = await run(machine, kexec(machine, { drivers: 'iommu-unaware', handoverDelayNs: 0 }));
    expect(first.state).toBe('gone');
    for (const smmu of ['/iommu@9050000', '/iommu@b000000']) expect(second.core.findDevice(smmu)?.status).not.toBe('bound');
    const next = findTestEngine(second.core, '/dma@c040000');
    expect(dmaUsesIommu(next.dev)).toBe(false);
    expect(next.runningFrames()).toEqual([frame]);
    const st = await run(machine, next.wait(frame));
    expect(st).toMatchObject({ state: 'done', dmaStatus: 'ok', bytesDone: 0x10_0000 });
    expect(machine.memory.read8(buf.cpuAddr + 0xf_ffff)).toBe(0xa5);
    // The new kernel's handler took the completion; the old kernel's never ran again.
    expect(next.irqCount).toBe(1);
    expect(old.irqCount).toBe(irqsBefore);
  });

  it('the hand-over takes virtual time: KEXEC_HANDOVER_DELAY_NS by default, or what the caller asks', async () => {
    for (const [opts, expected] of [[{}, KEXEC_HANDOVER_DELAY_NS], [{ handoverDelayNs: 20_000_000 }, 20_000_000]] as const) {
      const machine = virtMachine({ seed: 2 });
      const first = await boot(machine);
      let endedAt = -1;
      const origDiscard = first.discard.bind(first);
      first.discard = () => {
        endedAt = machine.scheduler.now;
        origDiscard();
      };
      const second = await run(machine, kexec(machine, opts));
      const bootLine = second.log.lines('info').find((l) => l.message.startsWith('booting kernel 1'))!;
      expect(bootLine.time - endedAt).toBe(expected);
    }
    expect(KEXEC_HANDOVER_DELAY_NS).toBeGreaterThanOrEqual(1_000_000);
    const machine = virtMachine({ seed: 2 });
    await boot(machine);
    await expectErrno(run(machine, kexec(machine, { handoverDelayNs: -1 })), 'EINVAL');
  });

  it('kexec with nothing running is ESRCH', async () => {
    const machine = virtMachine({ seed: 1 });
    await expectErrno(run(machine, kexec(machine)), 'ESRCH');
  });
});
