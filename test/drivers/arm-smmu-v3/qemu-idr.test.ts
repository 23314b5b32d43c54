/**
 * Probe against the ID registers of QEMU's `virt` SMMUv3 (hw/arm/smmuv3.c smmuv3_init_regs():
 * CMDQS = EVENTQS = 19, no PRI, no MSI) and what Linux writes back: queue sizes capped by
 * Q_MAX_SZ_SHIFT = PAGE_SHIFT + CONFIG_CMA_ALIGNMENT (8) = 20, so CMDQ_BASE.LOG2SIZE = 16 (2^16
 * 16-byte commands = 1 MiB) and EVTQ_BASE.LOG2SIZE = 15 (2^15 32-byte records), as a Linux 6.1 probe
 * trace on QEMU shows. Plus the IDR1.ATTR_TYPES_OVR and IDR3.BBML options and what the driver makes
 * of them.
 */
import { describe, expect, it } from 'vitest';
import { createArmSmmuV3Driver, findArmSmmuV3 } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import {
  ARM_SMMU_CMDQ_BASE,
  ARM_SMMU_EVTQ_BASE,
  ARM_SMMU_FEAT_ATTR_TYPES_OVR,
  ARM_SMMU_FEAT_BBML2,
  ARM_SMMU_FEAT_MSI,
  ARM_SMMU_FEAT_PRI,
  ARM_SMMU_PRIQ_BASE,
  STRTAB_STE_1_SHCFG,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuMakeBypassSte } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { QEMU_VIRT_SMMUV3_OPTIONS, resolveOptions, type SmmuV3Options } from '../../../hw/smmu-v3/options.js';
import { boot, machineFromTree } from '../../../scenarios/lib/lab.js';
import { bootSmmuV3, SMALL_SMMU_PATH, smallSmmuV3Tree, smmuModel } from '../../../scenarios/smmu-v3-lab.js';
import { expectErrno } from '../../lib/errno.js';

const IDR0 = 0x00;
const IDR1 = 0x04;
const IDR3 = 0x0c;
const IDR5 = 0x14;
const AIDR = 0x1c;
const LOG2SIZE = 0x1f;

async function qemuLab(seed = 1, smmu: SmmuV3Options = QEMU_VIRT_SMMUV3_OPTIONS) {
  const tree = smallSmmuV3Tree({ engines: [{ sid: 0x20 }, { sid: 0x21 }] });
  return bootSmmuV3({ seed, tree, smmuPath: SMALL_SMMU_PATH, smmu });
}

describe("QEMU virt's SMMUv3 ID registers", () => {
  it('read back as QEMU sets them', async () => {
    const lab = await qemuLab();
    // S1P | TTF AArch64 | COHACC | ASID16 | TTENDIAN LE | STALL_MODEL 1 | TERM_MODEL | ST_LEVEL 2-level.
    expect(lab.model.peek32(IDR0) >>> 0).toBe(0x0d40_101a);
    // SIDSIZE 16, EVENTQS 19, CMDQS 19; no SSIDs, no PRI queue, no attribute overrides.
    expect(lab.model.peek32(IDR1) >>> 0).toBe(0x0273_0010);
    // HAD | RIL, BBML 0.
    expect(lab.model.peek32(IDR3) >>> 0).toBe(0x0000_0404);
    // OAS 44 bits, 4K and 64K granules, STALL_MAX 0.
    expect(lab.model.peek32(IDR5) >>> 0).toBe(0x0000_0054);
    expect(lab.model.peek32(AIDR)).toBe(0x01);
  });

  it('Linux 6.1 queue sizes: CMDQ_BASE.LOG2SIZE 16, EVTQ_BASE.LOG2SIZE 15, PRIQ_BASE never written', async () => {
    const lab = await qemuLab();
    expect(lab.model.peek32(ARM_SMMU_CMDQ_BASE) & LOG2SIZE).toBe(16);
    expect(lab.model.peek32(ARM_SMMU_EVTQ_BASE) & LOG2SIZE).toBe(15);
    expect(lab.model.peek32(ARM_SMMU_PRIQ_BASE)).toBe(0);
    expect({ cmdq: lab.smmu.cmdqShift, evtq: lab.smmu.evtqShift }).toEqual({ cmdq: 16, evtq: 15 });
    // Each queue is one 1 MiB allocation, naturally aligned.
    expect(lab.smmu.cmdq.q.base % 0x10_0000).toBe(0);
    expect(lab.kernel.log.lines('info').map((l) => l.message).filter((m) => /allocated \d+ entries for/.test(m))).toEqual([
      'allocated 65536 entries for cmdq',
      'allocated 32768 entries for evtq',
    ]);
    expect(lab.smmu.features & (ARM_SMMU_FEAT_PRI | ARM_SMMU_FEAT_MSI | ARM_SMMU_FEAT_ATTR_TYPES_OVR | ARM_SMMU_FEAT_BBML2)).toBe(0);
    expect(lab.kernel.log.lines('err')).toEqual([]);
  });

  it('the PRI queue is capped the same way (PRIQS 19: LOG2SIZE 16) on an SMMU with PRI', async () => {
    const lab = await qemuLab(1, { ...QEMU_VIRT_SMMUV3_OPTIONS, ats: true, pri: true, priqLog2: 19 });
    expect(lab.model.peek32(ARM_SMMU_PRIQ_BASE) & LOG2SIZE).toBe(16);
  });

  it('queues smaller than the cap keep the IDR size; a kernel without CMA caps at its largest buddy order', async () => {
    const small = await qemuLab(1, { ...QEMU_VIRT_SMMUV3_OPTIONS, cmdqLog2: 8, evtqLog2: 7 });
    expect(small.model.peek32(ARM_SMMU_CMDQ_BASE) & LOG2SIZE).toBe(8);
    expect(small.model.peek32(ARM_SMMU_EVTQ_BASE) & LOG2SIZE).toBe(7);
    // No CONFIG_CMA_ALIGNMENT: PAGE_SHIFT + MAX_PAGE_ORDER (9 here: 2 MiB) = 21.
    const machine = machineFromTree(smallSmmuV3Tree({ engines: [{ sid: 0x20 }] }), {
      seed: 1,
      iommuOptions: { [SMALL_SMMU_PATH]: QEMU_VIRT_SMMUV3_OPTIONS },
    });
    const kernel = await boot(machine, { cmaAlignment: null });
    const lab = { smmu: findArmSmmuV3(kernel.core, SMALL_SMMU_PATH), model: smmuModel(machine, SMALL_SMMU_PATH) };
    expect(lab.smmu.cmdqShift).toBe(17);
    expect(lab.model.peek32(ARM_SMMU_CMDQ_BASE) & LOG2SIZE).toBe(17);
    expect(lab.model.peek32(ARM_SMMU_EVTQ_BASE) & LOG2SIZE).toBe(16);
  });

  it('CONFIG_CMA_ALIGNMENT outside its Kconfig range is refused', async () => {
    await expectErrno(() => createArmSmmuV3Driver({ pageAllocator: () => { throw new Error('unused'); }, cmaAlignment: 13 }), 'EINVAL', /EINVAL.*2\.\.12/);
  });
});

describe('IDR1.ATTR_TYPES_OVR and IDR3.BBML', () => {
  it('defaults: ATTR_TYPES_OVR 0 (the model applies no attribute overrides), BBML 2', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    expect((lab.model.peek32(IDR1) >>> 27) & 1).toBe(0);
    expect((lab.model.peek32(IDR3) >>> 11) & 3).toBe(2);
    expect(lab.smmu.features & ARM_SMMU_FEAT_ATTR_TYPES_OVR).toBe(0);
    expect(lab.smmu.features & ARM_SMMU_FEAT_BBML2).toBe(ARM_SMMU_FEAT_BBML2);
    expect(lab.kernel.log.lines('info').some((l) => / bbml2/.test(l.message))).toBe(true);
  });

  it.each([0, 1, 2] as const)('BBML %i: only level 2 becomes ARM_SMMU_FEAT_BBML2', async (bbml) => {
    const lab = await bootSmmuV3({ seed: 1, smmu: { bbml } });
    expect((lab.model.peek32(IDR3) >>> 11) & 3).toBe(bbml);
    expect((lab.smmu.features & ARM_SMMU_FEAT_BBML2) !== 0).toBe(bbml === 2);
  });

  it('ATTR_TYPES_OVR 1 is seen by the driver: bypass STEs then carry SHCFG = incoming', async () => {
    const lab = await bootSmmuV3({ seed: 1, smmu: { attrTypesOverride: true } });
    expect((lab.model.peek32(IDR1) >>> 27) & 1).toBe(1);
    expect(lab.smmu.features & ARM_SMMU_FEAT_ATTR_TYPES_OVR).toBe(ARM_SMMU_FEAT_ATTR_TYPES_OVR);
    const withOvr = new Uint32Array(16);
    armSmmuMakeBypassSte(lab.smmu.features, withOvr);
    expect(STRTAB_STE_1_SHCFG.get(withOvr)).toBe(1);
    const plain = await bootSmmuV3({ seed: 1 });
    const noOvr = new Uint32Array(16);
    armSmmuMakeBypassSte(plain.smmu.features, noOvr);
    expect(STRTAB_STE_1_SHCFG.get(noOvr)).toBe(0);
  });

  it('rejects a BBML the architecture does not define', () => {
    expect(() => resolveOptions({ bbml: 3 as 2 })).toThrow(/bbml: 3 is not 0, 1 or 2/);
  });
});
