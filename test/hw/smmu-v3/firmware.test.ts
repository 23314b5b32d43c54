/**
 * The SMMUv3 model built by the machine from a Device Tree `arm,smmu-v3` node (its registration in
 * hw/smmu-v3/index.ts): registers at the node's `reg`, interrupts by name, masters routed through it.
 */
import { describe, expect, it } from 'vitest';
import { SMMU_V3_MODEL_NAME, SmmuV3 } from '../../../hw/smmu-v3/index.js';
import { Machine } from '../../../hw/machine.js';
import { reg } from '../../../bus/of/dt-builder.js';
import { board } from '../../lib/board.js';

const BASE = 0x905_0000;

function dt() {
  const { b } = board();
  const smmu = b.node('/iommu@9050000', {
    compatible: 'arm,smmu-v3',
    reg: reg([BASE, 0x2_0000]),
    interrupts: [0, 74, 1, 0, 75, 1, 0, 77, 1],
    'interrupt-names': ['eventq', 'gerror', 'cmdq-sync'],
    'dma-coherent': true,
    '#iommu-cells': 1,
  });
  b.node('/dma@a000000', { compatible: 'vendor,dma', reg: reg([0xa00_0000, 0x1000]), iommus: [smmu, 0x10] });
  return b.build();
}

describe('SMMUv3 model from firmware', () => {
  it('is instantiated for an arm,smmu-v3 node, answers at its reg, and translates its masters', async () => {
    const m = Machine.fromDeviceTree(dt(), { seed: 1, iommuOptions: { [SMMU_V3_MODEL_NAME]: { sidBits: 12 } } });
    const entry = m.iommus.get('/iommu@9050000')!;
    expect(entry.status).toBe('modelled');
    expect(entry.model).toBe(SMMU_V3_MODEL_NAME);
    const idr0 = m.cpu.mmioRead32(BASE);
    expect((idr0 >>> 4) & 1).toBe(1); // COHACC from dma-coherent
    expect(m.cpu.mmioRead32(BASE + 0x4) & 0x3f).toBe(12);
    expect(m.cpu.mmioRead32(BASE + 0x1_00a8)).toBe(0); // EVENTQ_PROD in page 1
    // Disabled SMMU with the reset GBPA: the master's DMA bypasses.
    const dma = m.masters.get('/dma@a000000')!;
    m.memory.write32(0x8000_1000, 0x1234);
    const r = await dma.read(0x8000_1000, 4);
    expect(r.status).toBe('ok');
    // GBPA.ABORT: the same DMA is aborted by the SMMU.
    m.cpu.mmioWrite32(BASE + 0x44, 0x8010_0000);
    await m.scheduler.runFor(1_000);
    expect((await dma.read(0x8000_1000, 4)).status).toBe('abort');
  });

  it('wires the named interrupts: a command queue error raises the gerror line', async () => {
    const m = Machine.fromDeviceTree(dt(), { seed: 1 });
    let gerror = 0;
    m.cpu.requestIrq('/intc@8000000', [0, 75, 1], () => gerror++);
    const q = 0x8010_0000;
    m.cpu.mmioWrite64(BASE + 0x90, BigInt(q) | 4n); // CMDQ_BASE, 16 entries
    m.cpu.mmioWrite32(BASE + 0x50, 1); // IRQ_CTRL.GERROR_IRQEN
    m.cpu.mmioWrite32(BASE + 0x20, 8); // CR0.CMDQEN
    await m.scheduler.runFor(1_000);
    m.memory.write32(q, 0x7f); // an unknown opcode
    m.cpu.mmioWrite32(BASE + 0x98, 1);
    await m.scheduler.runFor(10_000);
    expect((m.cpu.mmioRead32(BASE + 0x9c) >>> 24) & 0x7f).toBe(1);
    expect(gerror).toBe(1);
  });

  it('rejects unknown model options with an error naming them', () => {
    const m = Machine.fromDeviceTree(dt(), { seed: 1, iommuOptions: { [SMMU_V3_MODEL_NAME]: { stallModle: 2 } } });
    const entry = m.iommus.get('/iommu@9050000')!;
    expect(entry.status).toBe('failed');
    expect(entry.error).toMatch(/unknown SMMUv3 model option "stallModle"/);
    expect(SmmuV3).toBeTypeOf('function');
  });
});
