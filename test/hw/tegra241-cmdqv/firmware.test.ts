import { describe, expect, it } from 'vitest';
import { buildVirtDeviceTree, VIRT } from '../../../scenarios/machines/virt.js';
import { machineFromTree } from '../../../scenarios/lib/lab.js';
import { Tegra241Cmdqv } from '../../../hw/tegra241-cmdqv/cmdqv.js';

const SMMU = '/iommu@9050000';
const str = (v: string): Uint8Array => new TextEncoder().encode(`${v}\0`);
const cells = (v: number[]): Uint8Array => {
  const b = new Uint8Array(v.length * 4);
  v.forEach((x, i) => new DataView(b.buffer).setUint32(i * 4, x));
  return b;
};

describe('Tegra241 CMDQV: the DT binding (nvidia,cmdqv)', () => {
  it('the SMMU node naming a CMDQV gets it modelled with it, mapped at its reg; the node is not skipped', () => {
    const m = machineFromTree(buildVirtDeviceTree({ cmdqv: true }));
    const mmio = m.iommus.get(SMMU)!.instance!.mmio;
    expect(mmio).toHaveLength(2);
    expect(mmio[1]).toMatchObject({ base: VIRT.cmdqv, size: VIRT.cmdqvSize });
    expect(mmio[1]!.device).toBeInstanceOf(Tegra241Cmdqv);
    expect(m.skippedNodes.map((s) => s.path)).not.toContain('/cmdqv@9100000');
    // Through the machine's MMIO: PARAM of the default model.
    expect(m.cpu.mmioRead32(VIRT.cmdqv + 0x4)).toBe(0x4241);
  });

  it('a disabled CMDQV node gives the plain SMMU', () => {
    const tree = buildVirtDeviceTree({ cmdqv: true });
    tree.byPath('/cmdqv@9100000')!.properties.set('status', str('disabled'));
    const m = machineFromTree(tree);
    expect(m.iommus.get(SMMU)!.instance!.mmio).toHaveLength(1);
    expect(m.cpu.mmioPresent(VIRT.cmdqv, 4)).toBe(false);
  });

  it('a region with room for 2 VINTFs gives a model with 2; options come under the SMMU\'s key "cmdqv"', () => {
    const tree = buildVirtDeviceTree({ cmdqv: true });
    const node = tree.byPath('/cmdqv@9100000')!;
    node.properties.set('reg', cells([0, VIRT.cmdqv, 0, 0x7_0000]));
    const m = machineFromTree(tree, { iommuOptions: { [SMMU]: { cmdqv: { sidPairsLog2: 3 } } } });
    const c = m.iommus.get(SMMU)!.instance!.mmio[1]!.device as Tegra241Cmdqv;
    expect([c.numVintfs, c.sidPairs, c.regionSize]).toEqual([2, 8, 0x7_0000]);
  });

  it('a node named by nvidia,cmdqv that is no CMDQV fails the SMMU model with a message naming it', () => {
    const tree = buildVirtDeviceTree({ cmdqv: true });
    tree.byPath('/cmdqv@9100000')!.properties.set('compatible', str('vendor,other'));
    const m = machineFromTree(tree);
    const e = m.iommus.get(SMMU)!;
    expect(e.status).toBe('failed');
    expect(e.error).toMatch(/\/cmdqv@9100000: named by nvidia,cmdqv but not compatible with "nvidia,tegra241-cmdqv"/);
  });
});
