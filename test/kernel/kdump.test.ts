/**
 * kdump: crashkernel= reserves memory at boot, a crash kernel is loaded into it, and a panic boots
 * it there with no device shutdown; it sees only its reservation as RAM and the rest as the dump.
 */
import { describe, expect, it } from 'vitest';
import { CmdlineError } from '../../kernel/cmdline.js';
import { CRASH_IMAGE_SIZE, parseElfCoreHeader } from '../../kernel/crash-dump.js';
import { kexecLoadCrash, panic } from '../../kernel/kdump.js';
import { runningKernel } from '../../kernel/kernel.js';
import { kexec } from '../../kernel/kexec.js';
import { boot, run, virtMachine } from '../../scenarios/lib/lab.js';
import { VIRT } from '../../scenarios/machines/virt.js';
import { expectErrno } from '../lib/errno.js';

const MiB = 2 ** 20;
/** SMMUv3 CR0 and its enables, written out from the architecture (SMMUv3 6.3.9). */
const CR0 = VIRT.smmuV3 + 0x20;
const SMMUEN = 1 << 0;
const PRIQEN = 1 << 1;
const EVTQEN = 1 << 2;
const CMDQEN = 1 << 3;

describe('crashkernel= reservation', () => {
  it('reserves SIZE@OFFSET, and the kernel never hands it out', async () => {
    const m = virtMachine({ seed: 1 });
    const k = await boot(m, { cmdline: 'crashkernel=64M@0x60000000' });
    expect(k.crashkernel).toEqual({ base: 0x6000_0000, size: 64 * MiB, name: 'crashkernel' });
    expect(k.alloc.ownerOf(0x6000_0000)?.owner).toEqual({ kind: 'reserved', name: 'crashkernel' });
    expect(k.alloc.ownerOf(0x6000_0000 + 64 * MiB - 0x1000)?.owner).toEqual({ kind: 'reserved', name: 'crashkernel' });
    expect(k.log.lines('info').some((l) => l.message === 'crashkernel reserved: 0x60000000 - 0x63ffffff (64 MB)')).toBe(true);
  });

  it('without OFFSET, takes the highest 2 MiB-aligned free range below 4 GiB, as arm64 does', async () => {
    const k = await boot(virtMachine({ seed: 1 }), { cmdline: 'crashkernel=64M' });
    // RAM ends at 0xc0000000 on virt.
    expect(k.crashkernel).toEqual({ base: VIRT.ramBase + VIRT.ramSize - 64 * MiB, size: 64 * MiB, name: 'crashkernel' });
  });

  it('a reservation that does not fit is a warning, and loading a crash kernel then fails with EADDRNOTAVAIL', async () => {
    const m = virtMachine({ seed: 1 });
    const k = await boot(m, { cmdline: 'crashkernel=64M@0x7ff00000' });
    expect(k.crashkernel).toBeNull();
    expect(k.log.lines('warn').some((l) => /crashkernel reservation failed: .*not free RAM/.test(l.message))).toBe(true);
    await expectErrno(() => kexecLoadCrash(k), 'EADDRNOTAVAIL', /crashkernel=SIZE/);
  });
});

describe('loading a crash kernel', () => {
  it('fails with ENOMEM when the reservation cannot hold the image and its ELF core header', async () => {
    const k = await boot(virtMachine({ seed: 1 }), { cmdline: 'crashkernel=2M@0x60000000' });
    expect(k.crashkernel?.size).toBe(2 * MiB);
    await expectErrno(() => kexecLoadCrash(k), 'ENOMEM');
    expect(k.crashImage).toBeNull();
  });
});

describe('panic into a crash kernel', () => {
  it('boots the crash kernel inside its reservation, with the rest of RAM as the dump', async () => {
    const m = virtMachine({ seed: 2 });
    const first = await boot(m, { cmdline: 'crashkernel=64M@0x60000000' });
    const image = kexecLoadCrash(first);
    expect(image.elfcorehdr.base).toBe(0x6000_0000 + CRASH_IMAGE_SIZE);
    // The header in RAM describes RAM without the reservation, as two PT_LOAD segments.
    const segs = parseElfCoreHeader(m.cpu.ram, image.elfcorehdr.base, image.elfcorehdr.size);
    expect(segs).toEqual([
      { paddr: VIRT.ramBase, size: 0x6000_0000 - VIRT.ramBase },
      { paddr: 0x6400_0000, size: VIRT.ramBase + VIRT.ramSize - 0x6400_0000 },
    ]);
    const crash = (await run(m, panic(m, 'test')))!;
    expect(first.state).toBe('gone');
    expect(first.shutdownReport).toBeNull(); // no .shutdown ran
    expect(runningKernel(m.cpu)).toBe(crash);
    expect(crash.instance).toBe(1);
    expect(crash.isKdump).toBe(true);
    expect(crash.memory).toEqual([{ base: 0x6000_0000, size: 64 * MiB }]);
    expect(crash.vmcore).toEqual(segs);
    expect(crash.crashkernel).toBeNull();
    expect(crash.cmdline).toBe('');
    // Everything it allocates lies in its reservation, past its image and the ELF header.
    const pa = crash.alloc.allocPages(0, { kind: 'kernel', what: 'probe' });
    expect(pa).toBeGreaterThanOrEqual(0x6000_0000 + CRASH_IMAGE_SIZE);
    expect(pa).toBeLessThan(0x6400_0000);
    expect(crash.alloc.ownerOf(image.elfcorehdr.base)?.owner).toEqual({ kind: 'reserved', name: 'elfcorehdr' });
    expect(crash.alloc.ownerOf(0x6000_0000)?.owner).toEqual({ kind: 'reserved', name: 'kernel image' });
    expect(crash.alloc.ownerOf(VIRT.ramBase + 0x10_0000)).toBeNull();
    expect(first.log.lines('err').map((l) => l.message)).toEqual(['Kernel panic - not syncing: test', 'Starting crashdump kernel...']);
  });

  it('arm-smmu-v3 takes over the live SMMU as a kdump kernel: enabled, with the event and PRI queues off', async () => {
    const m = virtMachine({ seed: 3 });
    const first = await boot(m, { cmdline: 'crashkernel=64M@0x60000000' });
    expect(m.cpu.mmioRead32(CR0) & (SMMUEN | EVTQEN | PRIQEN | CMDQEN)).toBe(SMMUEN | EVTQEN | PRIQEN | CMDQEN);
    kexecLoadCrash(first);
    const crash = (await run(m, panic(m, 'test')))!;
    expect(crash.isKdump).toBe(true);
    expect(m.cpu.mmioRead32(CR0) & (SMMUEN | EVTQEN | PRIQEN | CMDQEN)).toBe(SMMUEN | CMDQEN);
    const smmuLines = crash.log.lines().filter((l) => l.source === `/iommu@${VIRT.smmuV3.toString(16)}`).map((l) => l.message);
    expect(smmuLines).toContain('SMMU currently enabled! Resetting...');
    // An ordinary kexec into an aware kernel enables both queues again.
    const m2 = virtMachine({ seed: 3 });
    await boot(m2);
    await run(m2, kexec(m2));
    expect(m2.cpu.mmioRead32(CR0) & (EVTQEN | PRIQEN)).toBe(EVTQEN | PRIQEN);
  });

  it('a corrupted ELF core header: the crash kernel boots, says the vmcore is not initialised, and is no kdump kernel', async () => {
    const m = virtMachine({ seed: 1 });
    const first = await boot(m, { cmdline: 'crashkernel=64M@0x60000000' });
    const image = kexecLoadCrash(first);
    m.cpu.ram.write32(image.elfcorehdr.base, 0);
    const crash = (await run(m, panic(m, 'test')))!;
    expect(crash.isKdump).toBe(false);
    expect(crash.log.lines('err').some((l) => /^Kdump: vmcore not initialized: elfcorehdr at 0x60200000: no ELF magic/.test(l.message))).toBe(true);
  });

  it('a panic with no crash kernel loaded stops the kernel where it is; its devices run on', async () => {
    const m = virtMachine({ seed: 1 });
    const k = await boot(m);
    expect(await run(m, panic(m, 'no kdump'))).toBeNull();
    expect(k.state).toBe('panicked');
  });
});

describe('strict parameters', () => {
  it('refuses to boot with an unknown parameter, naming it and the likely intended one', async () => {
    const m = virtMachine({ seed: 1 });
    let err: unknown;
    try {
      await boot(m, { cmdline: 'arm-smmu.shutdown_polic=abort-all', strictParams: true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CmdlineError);
    expect((err as Error).message).toBe(
      'EINVAL: kernel command line: unknown parameter(s) "arm-smmu.shutdown_polic=abort-all" ("arm-smmu.shutdown_polic=abort-all": did you mean arm-smmu.shutdown_policy?)',
    );
    expect(runningKernel(m.cpu)).toBeNull();
    // Without strict mode the same line boots and warns.
    const k = await boot(m, { cmdline: 'arm-smmu.shutdown_polic=abort-all' });
    expect(k.log.lines('warn').map((l) => l.message)).toEqual(
      expect.arrayContaining([
        'Unknown kernel command line parameters "arm-smmu.shutdown_polic=abort-all", will be passed to user space.',
        '"arm-smmu.shutdown_polic=abort-all": did you mean arm-smmu.shutdown_policy?',
      ]),
    );
  });
});
