/**
 * The SMMUv2 model built by the machine from a Device Tree node (its registration in
 * hw/smmu-v2/index.ts): registers at the node's `reg`, `#global-interrupts` splitting the lines,
 * masters routed through it with their `dma-can-stall`.
 */
import { describe, expect, it } from 'vitest';
import { SMMU_V2_MODEL_NAME } from '../../../hw/smmu-v2/index.js';
import { Machine } from '../../../hw/machine.js';
import type { SmmuV2 } from '../../../hw/smmu-v2/index.js';
import { reg, type DtProps } from '../../../bus/of/dt-builder.js';
import { board } from '../../lib/board.js';

const BASE = 0x2b40_0000;
const CB0 = BASE + 16 * 0x1000; // NUMPAGE = 16 for a 128K region

function dt(smmuProps: DtProps = {}) {
  const { b } = board();
  const smmu = b.node('/iommu@2b400000', {
    compatible: ['arm,mmu-500'],
    reg: reg([BASE, 0x2_0000]),
    '#global-interrupts': 1,
    interrupts: [0, 64, 4, 0, 65, 4, 0, 66, 4, 0, 67, 4, 0, 68, 4],
    '#iommu-cells': 1,
    ...smmuProps,
  });
  b.node('/gpu@a000000', { compatible: 'vendor,gpu', reg: reg([0xa00_0000, 0x1000]), iommus: [smmu, 0x10], 'dma-can-stall': true });
  b.node('/display@a100000', { compatible: 'vendor,disp', reg: reg([0xa10_0000, 0x1000]), iommus: [smmu, 0x11] });
  return b.build();
}

describe('SMMUv2 model from firmware', () => {
  it('is instantiated for an arm,mmu-500 node with banks limited by its context interrupts', () => {
    const m = Machine.fromDeviceTree(dt(), { seed: 1 });
    const entry = m.iommus.get('/iommu@2b400000')!;
    expect(entry.status).toBe('modelled');
    expect(entry.model).toBe('mmu-500');
    const id1 = m.cpu.mmioRead32(BASE + 0x24);
    expect(id1 & 0xff).toBe(4); // NUMCB = 4 context interrupts
    expect((id1 >>> 28) & 7).toBe(3); // NUMPAGENDXB from the 128K reg
    expect(m.cpu.mmioRead32(BASE) & 1).toBe(1); // CLIENTPD at reset
  });

  it('bypasses at reset, and stalls both masters in stall mode, counting the one without dma-can-stall', async () => {
    const m = Machine.fromDeviceTree(dt(), { seed: 1 });
    const gpu = m.masters.get('/gpu@a000000')!;
    const disp = m.masters.get('/display@a100000')!;
    m.memory.write32(0x8000_1000, 0x1234);
    expect((await gpu.read(0x8000_1000, 4)).status).toBe('ok');

    let contextIrqs = 0;
    m.cpu.requestIrq('/intc@8000000', [0, 65, 4], () => contextIrqs++);
    const root = 0x8010_0000; // an empty level 0 table: every VA faults
    m.cpu.mmioWrite32(BASE + 0x1000 + 0x800, 1); // CBA2R0.VA64
    m.cpu.mmioWrite32(BASE + 0x1000, 1 << 16); // CBAR0: stage 1
    m.cpu.mmioWrite32(CB0 + 0x010, (7 << 15) | 5);
    m.cpu.mmioWrite32(CB0 + 0x030, (1 << 23) | 16);
    m.cpu.mmioWrite64(CB0 + 0x020, (1n << 48n) | BigInt(root));
    m.cpu.mmioWrite32(CB0, 0x1e1); // M | CFRE | CFIE | CFCFG | HUPCF
    m.cpu.mmioWrite32(BASE + 0xc00, 0); // S2CR0 -> bank 0
    m.cpu.mmioWrite32(BASE + 0x800, 0x8000_0010 | (1 << 16)); // SMR0: SIDs 0x10-0x11
    m.cpu.mmioWrite32(BASE, 0x6); // GFRE | GFIE, CLIENTPD clear
    let gpuDone = false;
    let dispDone = false;
    gpu.submitRead(0x4000, 4, {}, () => (gpuDone = true));
    disp.submitRead(0x5000, 4, {}, () => (dispDone = true));
    await m.scheduler.runFor(10_000);
    expect(gpuDone).toBe(false);
    expect(dispDone).toBe(false);
    expect(contextIrqs).toBe(1);
    const smmu = entry(m);
    expect(smmu.stats.stalls).toBe(2);
    expect(smmu.stats.stallsOfNonStallingMasters).toBe(1);
    // Terminate both: clear FSR, RESUME with TnR=1.
    m.cpu.mmioWrite32(CB0 + 0x058, m.cpu.mmioRead32(CB0 + 0x058));
    m.cpu.mmioWrite32(CB0 + 0x008, 1);
    await m.scheduler.runFor(10_000);
    expect(gpuDone && dispDone).toBe(true);
  });

  it('#global-interrupts = 2: both global lines signal a global fault, context bank n uses the line after them', async () => {
    const m = Machine.fromDeviceTree(dt({ '#global-interrupts': 2 }), { seed: 1 });
    expect(m.cpu.mmioRead32(BASE + 0x24) & 0xff).toBe(3); // NUMCB: three context interrupts left
    const raised = new Map<number, number>();
    for (const spi of [64, 65, 66, 67, 68]) m.cpu.requestIrq('/intc@8000000', [0, spi, 4], () => raised.set(spi, (raised.get(spi) ?? 0) + 1));
    const gpu = m.masters.get('/gpu@a000000')!;
    // Unmatched stream with USFCFG: a global fault (USF).
    m.cpu.mmioWrite32(BASE, (1 << 10) | 0x6); // USFCFG | GFIE | GFRE, CLIENTPD clear
    expect((await gpu.read(0x8000_1000, 4)).status).toBe('abort');
    await m.scheduler.runFor(10_000);
    expect([...raised.entries()].sort()).toEqual([[64, 1], [65, 1]]);
    raised.clear();
    // Stream 0x10 to bank 0, whose empty table faults (terminate mode, CFIE): the first context line.
    m.cpu.mmioWrite32(BASE + 0x1000 + 0x800, 1);
    m.cpu.mmioWrite32(BASE + 0x1000, 1 << 16);
    m.cpu.mmioWrite32(CB0 + 0x010, (7 << 15) | 5);
    m.cpu.mmioWrite32(CB0 + 0x030, (1 << 23) | 16);
    m.cpu.mmioWrite64(CB0 + 0x020, 0x8010_0000n);
    m.cpu.mmioWrite32(CB0, 0x61); // M | CFRE | CFIE
    m.cpu.mmioWrite32(BASE + 0xc00, 0);
    m.cpu.mmioWrite32(BASE + 0x800, 0x8000_0010);
    m.cpu.mmioWrite32(BASE + 0x48, m.cpu.mmioRead32(BASE + 0x48)); // clear sGFSR
    expect((await gpu.read(0x4000, 4)).status).toBe('fault');
    await m.scheduler.runFor(10_000);
    expect([...raised.entries()]).toEqual([[66, 1]]);
  });

  it('rejects unknown model options with an error naming them', () => {
    const m = Machine.fromDeviceTree(dt(), { seed: 1, iommuOptions: { [SMMU_V2_MODEL_NAME]: { numCbs: 2 } } });
    const e = m.iommus.get('/iommu@2b400000')!;
    expect(e.status).toBe('failed');
    expect(e.error).toMatch(/unknown SMMUv2 model option "numCbs"/);
  });
});

function entry(m: Machine): SmmuV2 {
  const inst = m.iommus.get('/iommu@2b400000')!.instance!;
  return inst.portFor({ name: '/gpu@a000000', streamId: 0x10, cells: [0x10], kind: 'platform', canStall: true, pasidBits: 0 }) as SmmuV2;
}
