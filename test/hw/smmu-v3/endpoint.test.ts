/**
 * The SMMUv3 model with the machine's PCIe endpoint model on the other side of ATS and PRI: the
 * endpoint's ATC is filled by Translation Requests, a missing page goes through the PRI queue and a
 * "kernel" (this test, through MMIO and memory only) that maps it and answers with CMD_PRI_RESP,
 * and CMD_ATC_INV reaches the endpoint's ATC.
 */
import { describe, expect, it } from 'vitest';
import { PCI_ATS_CTRL_ENABLE, PCI_PASID_CTRL_ENABLE, PCI_PRI_CTRL_ENABLE, PcieEndpoint } from '../../../hw/pci/endpoint.js';
import { CMD, REG, Rig, ste, cd, PageTable } from './rig.js';

const SID = 0x08; // bus 0, device 1, function 0
const SVA = 0x7_0000;

function setup(): { rig: Rig; ep: PcieEndpoint; pt: PageTable; buf: number; served: number[] } {
  const rig = new Rig();
  rig.init({ atschk: true });
  const ctx = { trace: rig.trace, now: () => rig.scheduler.now, schedule: (d: number, fn: () => void, l: string) => void rig.scheduler.schedule(d, fn, l) };
  const ep = new PcieEndpoint('/pcie/ep@1', { streamId: SID, port: rig.smmu, iommu: rig.smmu.name }, ctx, {
    bus: 0, device: 1, fn: 0, ats: true, pri: true, pasidBits: 8,
  });
  rig.smmu.bindEndpoint(SID, ep);
  const { ats, pri, pasid } = ep.capabilityOffsets;
  ep.configWrite32(0x04, 0x6); // Memory Space + Bus Master
  ep.configWrite32(ats + 4, PCI_ATS_CTRL_ENABLE << 16);
  ep.configWrite32(pasid + 4, PCI_PASID_CTRL_ENABLE << 16);
  ep.configWrite32(pri + 0xc, 8);
  ep.configWrite32(pri + 4, PCI_PRI_CTRL_ENABLE);
  // STE: stage 1 with a 4-entry CD table, Full ATS; CD for PASID 2.
  const table = rig.alloc(64 * 4, 256);
  const pt = new PageTable(rig, 1);
  rig.writeDwords(table + 2 * 64, cd({ asid: 12, ttb0: pt.root }));
  rig.writeSte(SID, ste({ config: 0b101, s1ContextPtr: table, s1CdMax: 2, s1dss: 1, eats: 1 }));
  const buf = rig.alloc(0x1000);
  // The "kernel": the PRI interrupt handler maps the page and answers the group.
  const served: number[] = [];
  rig.smmu.connectIrq('priq', {
    raise: () =>
      rig.scheduler.schedule(1_000, () => {
        const prod = rig.r32(REG.PRIQ_PROD);
        const mask = (1 << (rig.priq.log2 + 1)) - 1;
        while ((rig.priq.cons & mask) !== (prod & mask)) {
          const a = rig.priq.base + (rig.priq.cons & ((1 << rig.priq.log2) - 1)) * 16;
          const d0 = rig.memory.read64(a);
          const d1 = rig.memory.read64(a + 8);
          const addr = Number(d1 & ~0xfffn);
          served.push(addr);
          pt.map(addr, buf, 0x1000);
          rig.post(CMD.priResp(Number(d0 & 0xffff_ffffn), Number(d1 & 0x1ffn), 2, Number((d0 >> 32n) & 0xf_ffffn)));
          rig.priq.cons = (rig.priq.cons + 1) & mask;
        }
        rig.w32(REG.PRIQ_CONS, rig.priq.cons);
      }, 'kernel PRI handler'),
  });
  return { rig, ep, pt, buf, served };
}

describe('SMMUv3 model with a PCIe endpoint (ATS, PRI)', () => {
  it('pages in a missing page through PRI and completes the DMA through the ATC', async () => {
    const { rig, ep, buf, served } = setup();
    const w = ep.write(SVA + 0x10, Uint8Array.of(0xde, 0xad), { ssid: 2 });
    const c = await rig.scheduler.runUntilSettled(w, 'endpoint write', 10_000_000);
    expect(c).toMatchObject({ status: 'ok', pa: buf + 0x10 });
    expect(rig.memory.read16(buf + 0x10)).toBe(0xadde);
    expect(served).toEqual([SVA]);
    expect(ep.atsStats).toMatchObject({ pageRequests: 1, pageResponses: 1 });
    expect(ep.atcContents).toMatchObject([{ ssid: 2, base: SVA, pa: buf, read: true, write: true }]);
  });

  it('CMD_ATC_INV removes the endpoint ATC entry; a stale SMMU TLB entry still serves it until TLBI', async () => {
    const { rig, ep, pt, buf } = setup();
    await rig.scheduler.runUntilSettled(ep.write(SVA, Uint8Array.of(1), { ssid: 2 }), 'first write', 10_000_000);
    expect(ep.atcContents).toHaveLength(1);
    pt.unmap(SVA);
    rig.issue(CMD.atcInv(SID, SVA, 0, 2), CMD.sync());
    expect(ep.atcContents).toHaveLength(0);
    // The SMMU's own TLB still holds the translation: the endpoint gets it back without PRI.
    const again = await rig.scheduler.runUntilSettled(ep.read(SVA, 1, { ssid: 2 }), 'stale read', 10_000_000);
    expect(again).toMatchObject({ status: 'ok', pa: buf });
    expect(ep.atsStats.pageRequests).toBe(1);
    rig.issue(CMD.tlbiNhAsid(0, 12), CMD.atcInv(SID, SVA, 0, 2), CMD.sync());
    await rig.scheduler.runUntilSettled(ep.read(SVA, 1, { ssid: 2 }), 'read after TLBI', 10_000_000);
    expect(ep.atsStats.pageRequests).toBe(2); // faulted in again through PRI
  });
});
