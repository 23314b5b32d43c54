/**
 * DMA through stage 1 and stage 2 context banks the driver programmed, and TLB maintenance: bytes
 * land where the page tables say, bank registers hold what Linux writes, an unmap is invalidated
 * (the next access faults instead of hitting a stale TLB entry), and freeing a domain gives its bank
 * back disabled.
 */
import { describe, expect, it } from 'vitest';
import { iommuIovaToPhys, iommuDomainFree } from '../../../core/iommu-domain.js';
import { iommuUnmap } from '../../../core/iommu-map.js';
import { iommuDetachDevice } from '../../../core/iommu-attach.js';
import { armSmmuDomainContextBank, armSmmuIovaToPhysHard } from '../../../drivers/arm-smmu/arm-smmu-domain.js';
import { armSmmuTlbStats } from '../../../drivers/arm-smmu/arm-smmu-tlb.js';
import { attachNew, rig, bytes, L, map } from './rig.js';

const GR1 = 0x1000;

describe('arm-smmu DMA', () => {
  it('translates a stage 1 domain: bytes land at the mapped PA, registers as Linux writes them', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    const cbndx = armSmmuDomainContextBank(domain);
    expect(cbndx).toBeGreaterThanOrEqual(0);
    const pa = b.page();
    await map(b, domain, 0x1234_5000, pa);
    const c = await b.master(L.masterA).write(0x1234_5010, bytes(1, 2, 3, 4));
    expect(c.status).toBe('ok');
    expect([...b.machine.memory.read(pa + 0x10, 4)]).toEqual([1, 2, 3, 4]);
    const r = await b.master(L.masterA).read(0x1234_5010, 4);
    expect([...r.data!]).toEqual([1, 2, 3, 4]);
    // CBAR: stage 1 with stage 2 bypass, BPSHCFG NSH, MEMATTR WB; CBA2R.VA64.
    expect(b.reg(GR1 + 4 * cbndx)).toBe((1 << 16) | (0xf << 12) | (3 << 8));
    expect(b.reg(GR1 + 0x800 + 4 * cbndx) & 1).toBe(1);
    // SCTLR: CFIE CFRE AFE TRE M ASIDPNE, and CFCFG because master A can stall.
    expect(b.cb(cbndx, 0)).toBe((1 << 6) | (1 << 5) | (1 << 2) | (1 << 1) | 1 | (1 << 12) | (1 << 7));
    // TTBR0 carries ASID = bank index in [63:48]; TCR has EPD1 and T0SZ = 64 - 48.
    expect(b.cb(cbndx, 0x24) >>> 16).toBe(cbndx);
    expect(b.cb(cbndx, 0x30) & 0x3f).toBe(16);
    expect((b.cb(cbndx, 0x30) >>> 23) & 1).toBe(1);
    // TCR2: SEP upstream, AS (16-bit ASID).
    expect((b.cb(cbndx, 0x10) >>> 15) & 7).toBe(7);
    expect((b.cb(cbndx, 0x10) >>> 4) & 1).toBe(1);
    expect(iommuIovaToPhys(domain, 0x1234_5678)).toBe(pa + 0x678);
  });

  it('translates a stage 2 (nesting parent) domain with VMID = bank + 1', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterNoStall, true);
    const cbndx = armSmmuDomainContextBank(domain);
    const pa = b.page();
    await map(b, domain, 0x8000_0000, pa);
    const c = await b.master(L.masterNoStall).write(0x8000_0ff0, bytes(9, 8, 7));
    expect(c.status).toBe('ok');
    expect([...b.machine.memory.read(pa + 0xff0, 3)]).toEqual([9, 8, 7]);
    // CBAR: stage 2 translate (TYPE 0) with the 8-bit VMID.
    expect(b.reg(GR1 + 4 * cbndx)).toBe(cbndx + 1);
    // SCTLR without ASIDPNE and, the master being unable to stall, without CFCFG.
    expect(b.cb(cbndx, 0)).toBe((1 << 6) | (1 << 5) | (1 << 2) | (1 << 1) | 1);
    // VTCR: RES1, T0SZ = 16, SL0 and TG0 as io-pgtable chose.
    expect(b.cb(cbndx, 0x30) >>> 31).toBe(1);
    expect(b.cb(cbndx, 0x30) & 0x3f).toBe(16);
  });

  it('invalidates on unmap: the next access faults instead of using a stale TLB entry', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterNoStall);
    const pa = b.page();
    await map(b, domain, 0x4000, pa);
    expect((await b.master(L.masterNoStall).write(0x4000, bytes(0xaa))).status).toBe('ok');
    const syncs = armSmmuTlbStats(b.smmu).syncs;
    expect(await b.run(iommuUnmap(domain, 0x4000, 0x1000))).toBe(0x1000);
    expect(armSmmuTlbStats(b.smmu).syncs).toBeGreaterThan(syncs);
    const c = await b.master(L.masterNoStall).write(0x4000, bytes(0xbb));
    expect(c.status).toBe('fault');
    expect(b.machine.memory.read(pa, 1)[0]).toBe(0xaa);
  });

  it('shares one bank between two masters attached to the same domain', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    await b.run(import('../../../core/iommu-attach.js').then((m) => m.iommuAttachDevice(domain, b.dev(L.masterB))));
    const pa = b.page();
    await map(b, domain, 0x10_0000, pa);
    expect((await b.master(L.masterB).write(0x10_0004, bytes(0x42))).status).toBe('ok');
    expect(b.machine.memory.read(pa + 4, 1)[0]).toBe(0x42);
    const cbndx = armSmmuDomainContextBank(domain);
    // Both stream-map entries point at the same bank.
    const s2crs = [0, 1, 2, 3, 4].map((i) => b.reg(0xc00 + 4 * i)).filter((v) => (v >>> 16) === 0 && (v & 0xff) === cbndx);
    expect(s2crs.length).toBe(2);
  });

  it('gives the bank back disabled when the domain is freed', async () => {
    const b = await rig();
    const dev = b.dev(L.masterNoStall);
    const domain = await attachNew(b, L.masterNoStall);
    const cbndx = armSmmuDomainContextBank(domain);
    await b.run(iommuDetachDevice(domain, dev));
    await b.run(iommuDomainFree(domain));
    expect(b.cb(cbndx, 0)).toBe(0);
    expect(b.smmu.contextMap[cbndx]).toBe(false);
  });

  it('walks the tables in hardware (ATS1PR) on an SMMU that has translation ops', async () => {
    const b = await rig({ compatible: ['arm,smmu-v2'] });
    const domain = await attachNew(b, L.masterNoStall);
    const pa = b.page();
    await map(b, domain, 0x20_3000, pa);
    expect(await b.run(armSmmuIovaToPhysHard(domain, 0x20_3abc))).toBe(pa + 0xabc);
    expect(await b.run(armSmmuIovaToPhysHard(domain, 0x40_0000))).toBe(0);
  });
});
