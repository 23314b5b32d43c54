/**
 * Real board DTBs with MMU-401 / MMU-500 SMMUs (Juno r2, ZynqMP ZCU102, SM8250 MTP, AMD Seattle):
 * what `iommu-sim boot` reports. Every enabled SMMU is probed by arm-smmu; every master the kernel
 * has a device for gets a group and a domain; every stream ID has a valid SMR carrying the mask of
 * its specifier (2-cell `iommus`), read back from the hardware.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ofIommuSpecs } from '../../../bus/of/of-iommu.js';
import type { Machine } from '../../../hw/machine.js';
import type { Kernel } from '../../../kernel/kernel.js';
import { bootReport } from '../../../scenarios/lib/boot-report.js';
import { boot, machineFromDtb } from '../../../scenarios/lib/lab.js';
import { ARM_SMMU_COMPATIBLES } from '../../../drivers/arm-smmu/arm-smmu.js';

const FIXTURES = new URL('../../fixtures/dtb/', import.meta.url);

async function bootDtb(name: string): Promise<{ machine: Machine; kernel: Kernel }> {
  const machine = machineFromDtb(readFileSync(new URL(`${name}.dtb`, FIXTURES)));
  return { machine, kernel: await boot(machine) };
}

/** The SMR values of the SMMU at `base`, as many as ID0.NUMSMRG says. */
function smrs(machine: Machine, base: number): number[] {
  const n = machine.cpu.mmioRead32(base + 0x20) & 0xff;
  return Array.from({ length: n }, (_, i) => machine.cpu.mmioRead32(base + 0x800 + 4 * i));
}

const isArmSmmu = (compat: readonly string[]): boolean => compat.some((c) => ARM_SMMU_COMPATIBLES.includes(c));

describe('arm-smmu on real DTBs', () => {
  for (const name of ['juno-r2', 'zynqmp-zcu102-rev1.0', 'sm8250-mtp', 'amd-overdrive-rev-b1']) {
    it(name, async () => {
      const { machine, kernel } = await bootDtb(name);
      const report = bootReport(machine, kernel);
      const v2 = report.iommus.filter((i) => isArmSmmu(i.compatible));
      expect(v2.length).toBeGreaterThan(0);
      for (const i of v2) {
        const node = kernel.dt.byPath(i.node)!;
        if (!node.available) {
          expect(i.status).toBe('disabled');
          continue;
        }
        expect({ node: i.node, status: i.status, driver: i.driver, error: i.error }).toEqual({ node: i.node, status: 'probed', driver: 'arm-smmu', error: null });
      }
      const probed = new Set(v2.filter((i) => i.status === 'probed').map((i) => i.node));
      let checkedSmrs = 0;
      for (const m of report.masters) {
        const node = kernel.dt.byPath(m.node)!;
        const dev = kernel.core.findDeviceByOfNode(node);
        if (!dev || !m.iommus.every((s) => probed.has(s.iommu))) continue;
        expect({ node: m.node, group: m.group !== null, domain: m.domain !== null }).toEqual({ node: m.node, group: true, domain: true });
        for (const spec of ofIommuSpecs(kernel.dt, node)) {
          const smmuNode = spec.iommu;
          const base = Number(machine.iommus.get(smmuNode.path)!.regions[0]!.base);
          const mask = spec.cells[1] ?? smmuNode.u32('stream-match-mask') ?? 0;
          // A valid SMR carries (id, mask) itself, or covers it entirely (then the entry is shared).
          const sid = spec.cells[0]!;
          const covered = smrs(machine, base).some((v) => {
            const smrMask = (v >>> 16) & 0x7fff;
            return v >>> 31 === 1 && (mask & smrMask) === mask && ((sid ^ v) & ~smrMask & 0x7fff) === 0;
          });
          expect({ master: m.node, sid, mask, covered }).toEqual({ master: m.node, sid, mask, covered: true });
          checkedSmrs++;
        }
      }
      if (report.masters.some((m) => kernel.core.findDeviceByOfNode(kernel.dt.byPath(m.node)!))) expect(checkedSmrs).toBeGreaterThan(0);
    });
  }

  it('applies SMR masks from 2-cell specifiers (Seattle SATA <0 0x1f>, SM8250 GPU <0 0x401>, shared <0x586 0x11>)', async () => {
    const seattle = await bootDtb('amd-overdrive-rev-b1');
    expect(smrs(seattle.machine, 0xe020_0000)).toContain(0x801f_0000);
    const sm8250 = await bootDtb('sm8250-mtp');
    expect(smrs(sm8250.machine, 0x3da_0000)).toContain(0x8401_0000);
    // <1414 0x11> and <1430 0x11> differ only in a masked bit: one SMR serves both.
    const apps = smrs(sm8250.machine, 0x1500_0000);
    expect(apps).toContain(0x8011_0586);
    expect(apps).not.toContain(0x8011_0596);
    // Two masters naming the same streams share their stream-map entries and their group.
    const rep = bootReport(sm8250.machine, sm8250.kernel);
    const g = (p: string): number | null => rep.masters.find((m) => m.node === p)!.group;
    expect(g('/soc@0/dma-controller@1dc4000')).toBe(g('/soc@0/crypto@1dfa000'));
  });
});
