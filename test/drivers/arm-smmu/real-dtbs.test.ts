/**
 * Real board DTBs with MMU-401 / MMU-500 SMMUs (Juno r2, ZynqMP ZCU102, SM8250 MTP, AMD Seattle):
 * what `iommu-sim boot` reports. Every enabled SMMU is probed by arm-smmu; every master the kernel
 * has a device for gets a group and a domain; every stream ID has a valid SMR carrying the mask of
 * its specifier (2-cell `iommus`), read back from the hardware. ZynqMP's board file leaves its MMU-500
 * disabled, so it is also booted enabled, with masters, as Xilinx boards run it.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ofIommuSpecs } from '../../../bus/of/of-iommu.js';
import type { Machine } from '../../../hw/machine.js';
import type { Kernel } from '../../../kernel/kernel.js';
import { bootReport } from '../../../scenarios/lib/boot-report.js';
import { boot, machineFromDtb, run } from '../../../scenarios/lib/lab.js';
import { ARM_SMMU_COMPATIBLES } from '../../../drivers/arm-smmu/arm-smmu.js';
import { ArmSmmuDevice } from '../../../drivers/arm-smmu/arm-smmu-device.js';
import { parseFdt, writeFdt } from '../../../bus/of/fdt.js';
import { iommuAttachDevice } from '../../../core/iommu-attach.js';
import { iommuPagingDomainAlloc, iommuSetFaultHandler } from '../../../core/iommu-domain.js';
import { iommuMap } from '../../../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../../core/io-pgtable.js';

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
          const base = Number(machine.iommus.get(smmuNode.path)!.regions[0].base);
          const mask = spec.cells[1] ?? smmuNode.u32('stream-match-mask') ?? 0;
          // A valid SMR carries (id, mask) itself, or covers it entirely (then the entry is shared).
          const sid = spec.cells[0];
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

  it('ZynqMP with its MMU-500 enabled (as Xilinx boards do): 16 banks on one shared SPI, SMRs, DMA and faults', async () => {
    // The board file leaves the SMMU disabled and names no masters; enable it and give three masters
    // their Xilinx stream IDs (GEM3 0x877, SDHCI1 0x871, FPD DMA channel 1 0x14e8), as a board overlay would.
    const tree = parseFdt(readFileSync(new URL('zynqmp-zcu102-rev1.0.dtb', FIXTURES)));
    const smmuNode = tree.byPath('/axi/iommu@fd800000')!;
    const phandle = Math.max(...[...tree.nodes()].map((n) => n.u32('phandle') ?? 0)) + 1;
    const cells = (...v: number[]): Uint8Array => {
      const b = new Uint8Array(4 * v.length);
      v.forEach((x, i) => new DataView(b.buffer).setUint32(4 * i, x));
      return b;
    };
    smmuNode.properties.set('status', new TextEncoder().encode('okay\0'));
    smmuNode.properties.set('phandle', cells(phandle));
    const masters = { '/axi/ethernet@ff0e0000': 0x877, '/axi/mmc@ff170000': 0x871, '/axi/dma-controller@fd500000': 0x14e8 };
    for (const [path, sid] of Object.entries(masters)) tree.byPath(path)!.properties.set('iommus', cells(phandle, sid));
    tree.invalidate();
    const machine = machineFromDtb(writeFdt(tree));
    const kernel = await boot(machine);
    const report = bootReport(machine, kernel);
    expect(report.iommus.map((i) => [i.node, i.status, i.driver, i.error])).toEqual([['/axi/iommu@fd800000', 'probed', 'arm-smmu', null]]);
    const smmu = kernel.core.findDeviceByOfNode(kernel.dt.byPath(smmuNode.path)!)!.driverData as ArmSmmuDevice;
    // 0x20000 of registers: NUMPAGE 16; 17 interrupts (all SPI 155): 1 global + 16 context, 16 banks.
    expect([smmu.numpage, smmu.numContextBanks, smmu.numContextIrqs, smmu.numMappingGroups]).toEqual([16, 16, 16, 48]);
    for (const path of Object.keys(masters)) {
      const m = report.masters.find((x) => x.node === path)!;
      expect({ path, group: m.group !== null, domain: m.domain }).toEqual({ path, group: true, domain: 'DMA-FQ' });
    }
    const regs = smrs(machine, 0xfd80_0000);
    for (const sid of Object.values(masters)) expect(regs).toContain((0x8000_0000 | sid) >>> 0);
    expect(regs.filter((v) => v >>> 31).length).toBe(3);

    // Translate through a bank of its own, then fault: the shared context line finds the right bank.
    const gemPath = '/axi/ethernet@ff0e0000';
    const gem = kernel.core.findDeviceByOfNode(kernel.dt.byPath(gemPath)!)!;
    const domain = iommuPagingDomainAlloc(gem);
    await run(machine, iommuAttachDevice(domain, gem));
    const pa = kernel.alloc.allocPages(0, { kind: 'kernel', what: 'zynqmp test page' }, { zero: true });
    await run(machine, iommuMap(domain, 0x4000_0000, pa, 0x1000, IOMMU_READ | IOMMU_WRITE));
    const master = machine.masters.get(gemPath)!;
    expect((await run(machine, master.write(0x4000_0010, Uint8Array.of(0x5a)))).status).toBe('ok');
    expect(machine.memory.read(pa + 0x10, 1)[0]).toBe(0x5a);
    const faults: number[] = [];
    iommuSetFaultHandler(domain, (_d, _dev, iova) => {
      faults.push(iova);
      return 'EFAULT';
    });
    expect((await run(machine, master.write(0x4000_2000, Uint8Array.of(1)))).status).toBe('fault');
    await run(machine, machine.cpu.delay(10_000));
    expect(faults).toEqual([0x4000_2000]);
  });

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
