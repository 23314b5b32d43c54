/**
 * Domains: the driver never leaves a stale TLB entry behind an unmap (random map/unmap/DMA sequences
 * checked against the model's TLB), flush_iotlb_all, iova_to_phys through blocks, ASID/VMID
 * lifetime, identity (iommu.passthrough) and blocked (DMA ownership) domains, allocation flags.
 */
import { describe, expect, it } from 'vitest';
import { iommuDetachDevice, iommuGroupClaimDmaOwner, iommuGroupReleaseDmaOwner } from '../../../core/iommu-attach.js';
import { IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_ALLOC_PASID, iommuDomainFree, iommuIovaToPhys, iommuPagingDomainAllocFlags } from '../../../core/iommu-domain.js';
import { iommuGroupGet } from '../../../core/iommu-group.js';
import { deviceIommuCapable } from '../../../core/iommu-device.js';
import type { PciDevice } from '../../../bus/pci/pci-device.js';
import { armSmmuV3MasterOf } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { iommuFlushIotlbAll } from '../../../core/iommu-map.js';
import { dmaMapSingle, dmaUnmapSingle } from '../../../core/dma-mapping.js';
import { Prng } from '../../../hw/prng.js';
import { armSmmuAsidSpace } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-asid.js';
import type { ArmSmmuDomain } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import {
  CMDQ_0_OP,
  CMDQ_CFGI_0_SID,
  CMDQ_OP_CFGI_STE,
  CMDQ_OP_CMD_SYNC,
  CMDQ_OP_TLBI_NH_ASID,
  CMDQ_TLBI_0_ASID,
  STRTAB_STE_1_EATS,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuSteConfigName } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { bootReport } from '../../../scenarios/lib/boot-report.js';
import { allocPages, bootSmmuV3, deviceOf, engineJob, fillPhys, mapRange, ownDomain, readPhys, runIn, unmapRange, V3 } from '../../../scenarios/smmu-v3-lab.js';
import { expectErrno } from '../../lib/errno.js';

const SID = 0x101;
const ACCESS_READ = 0;

describe('the driver never leaves a stale translation', () => {
  it('random map / DMA / unmap: after every unmap the TLB no longer translates the page and DMA faults', async () => {
    const lab = await bootSmmuV3({ seed: 3 });
    const domain = await ownDomain(lab, V3.engine);
    const prng = new Prng(42);
    const PAGES = 8;
    const base = 0x6000_0000;
    const pa = allocPages(lab, PAGES * 4096);
    fillPhys(lab, pa, PAGES * 4096, 0xee);
    const mapped = new Array<boolean>(PAGES).fill(false);
    let unmaps = 0;
    for (let step = 0; step < 40; step++) {
      const i = prng.nextU32() % PAGES;
      const iova = base + i * 4096;
      if (mapped[i]) {
        expect(await unmapRange(lab, domain, iova, 4096)).toBe(4096);
        mapped[i] = false;
        unmaps++;
        expect(lab.model.translateFast(SID, -1, iova, ACCESS_READ)).toBe(-1);
        const st = await engineJob(lab, V3.engine, { op: 'checksum', src: iova, len: 64 });
        expect(st.state).toBe('error');
      } else {
        await mapRange(lab, domain, iova, pa + i * 4096, 4096);
        mapped[i] = true;
        // Read it: the TLB now holds the translation the next unmap must remove.
        const st = await engineJob(lab, V3.engine, { op: 'checksum', src: iova, len: 64 });
        expect(st.state).toBe('done');
        expect(lab.model.translateFast(SID, -1, iova, ACCESS_READ)).toBe(pa + i * 4096);
      }
    }
    expect(unmaps).toBeGreaterThan(5);
  });

  it('flush_iotlb_all: TLBI by ASID plus a CMD_SYNC, and the TLB forgets the domain', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const domain = (await ownDomain(lab, V3.engine)) as ArmSmmuDomain;
    const pa = allocPages(lab, 4096);
    await mapRange(lab, domain, 0x7000_0000, pa, 4096);
    await engineJob(lab, V3.engine, { op: 'checksum', src: 0x7000_0000, len: 64 });
    expect(lab.model.translateFast(SID, -1, 0x7000_0000, ACCESS_READ)).toBe(pa);
    const seen: [number, number][] = [];
    lab.smmu.cmdq.onCommand = (w, off) => seen.push([CMDQ_0_OP.get(w, off), CMDQ_TLBI_0_ASID.get(w, off)]);
    await runIn(lab, iommuFlushIotlbAll(domain));
    lab.smmu.cmdq.onCommand = null;
    expect(seen.map(([op]) => op)).toEqual([CMDQ_OP_TLBI_NH_ASID, CMDQ_OP_CMD_SYNC]);
    expect(seen[0][1]).toBe(domain.asid);
    expect(lab.model.translateFast(SID, -1, 0x7000_0000, ACCESS_READ)).toBe(-1);
  });
});

describe('the default DMA-FQ domain', () => {
  it('DMA API mappings translate; a lazy unmap is flushed by the flush queue (TLBI by ASID), not per page', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const dev = deviceOf(lab, V3.engine);
    const domain = iommuGroupGet(dev)!.domain as ArmSmmuDomain;
    expect(domain.type).toBe(3 | 8); // IOMMU_DOMAIN_DMA_FQ
    const src = allocPages(lab, 4096);
    const dst = allocPages(lab, 4096);
    fillPhys(lab, src, 4096, 0x2d);
    const srcDma = await runIn(lab, dmaMapSingle(dev, src, 4096, 'to-device'));
    const dstDma = await runIn(lab, dmaMapSingle(dev, dst, 4096, 'from-device'));
    expect((await engineJob(lab, V3.engine, { op: 'copy', src: srcDma, dst: dstDma, len: 4096 })).state).toBe('done');
    expect(readPhys(lab, dst, 4096).every((b) => b === 0x2d)).toBe(true);

    const seen: number[] = [];
    lab.smmu.cmdq.onCommand = (w, off) => seen.push(CMDQ_0_OP.get(w, off));
    await runIn(lab, dmaUnmapSingle(dev, dstDma, 4096, 'from-device'));
    // Lazy: the unmap returns without a TLBI; the TLB may still hold the translation.
    expect(seen).toEqual([]);
    expect(lab.model.translateFast(SID, -1, dstDma, 1)).toBe(dst);
    // The flush queue's timer (10 ms) flushes the whole ASID.
    await lab.machine.scheduler.runFor(11_000_000);
    lab.smmu.cmdq.onCommand = null;
    expect(seen).toEqual([CMDQ_OP_TLBI_NH_ASID, CMDQ_OP_CMD_SYNC]);
    expect(lab.model.translateFast(SID, -1, dstDma, 1)).toBe(-1);
  });

  it('switching the RID from the S1 default domain to a stage 2 domain: a disruptive STE update, 3 syncs', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    let cfgi = 0;
    lab.smmu.cmdq.onCommand = (w, off) => {
      if (CMDQ_0_OP.get(w, off) === CMDQ_OP_CFGI_STE && CMDQ_CFGI_0_SID.get(w, off) === SID) cfgi++;
    };
    await ownDomain(lab, V3.engine, 'S2');
    lab.smmu.cmdq.onCommand = null;
    // STE.S2VMID and Config both change: V=0, then qwords 1-7, then qword 0 — one CFGI_STE + CMD_SYNC each.
    expect(cfgi).toBe(3);
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(SID))).toBe('s2');
  });
});

describe('domain lifetime and types', () => {
  it('iova_to_phys through a 2 MiB block', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const domain = await ownDomain(lab, V3.engine);
    const pa = allocPages(lab, 0x20_0000);
    await mapRange(lab, domain, 0x4020_0000, pa, 0x20_0000);
    expect(iommuIovaToPhys(domain, 0x4020_0000 + 0x1_2345)).toBe(pa + 0x1_2345);
    expect(iommuIovaToPhys(domain, 0x4040_0000)).toBe(0);
  });

  it('freeing a domain gives its ASID (stage 1) or VMID (stage 2) back', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const dev = deviceOf(lab, V3.engine);
    const space = armSmmuAsidSpace(lab.kernel.core);
    const s1 = (await ownDomain(lab, V3.engine)) as ArmSmmuDomain;
    expect(space.owner(s1.asid)).toBe(s1);
    await runIn(lab, iommuDetachDevice(s1, dev));
    await runIn(lab, iommuDomainFree(s1));
    expect(space.has(s1.asid)).toBe(false);
    const s2 = (await ownDomain(lab, V3.engine, 'S2')) as ArmSmmuDomain;
    expect(lab.smmu.vmidMap.has(s2.vmid)).toBe(true);
    await runIn(lab, iommuDetachDevice(s2, dev));
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(SID))).toBe('s1');
    await runIn(lab, iommuDomainFree(s2));
    expect(lab.smmu.vmidMap.has(s2.vmid)).toBe(false);
  });

  it('iommu.passthrough=1: IDENTITY default domains, bypass STEs, DMA at physical addresses', async () => {
    const lab = await bootSmmuV3({ seed: 1, bootargs: 'iommu.passthrough=1' });
    const m = bootReport(lab.machine, lab.kernel).masters.find((x) => x.node === V3.engine)!;
    expect(m.domain).toBe('IDENTITY');
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(SID))).toBe('bypass');
    const src = allocPages(lab, 4096);
    const dst = allocPages(lab, 4096);
    fillPhys(lab, src, 4096, 0x81);
    expect((await engineJob(lab, V3.engine, { op: 'copy', src, dst, len: 4096 })).state).toBe('done');
    expect(readPhys(lab, dst, 4096).every((b) => b === 0x81)).toBe(true);
  });

  it('claiming DMA ownership moves a group to the blocked domain (abort STEs), releasing it restores the default', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const group = iommuGroupGet(deviceOf(lab, '0000:00:03.0'))!;
    expect(group.devices.length).toBe(2);
    const owner = {};
    await runIn(lab, iommuGroupClaimDmaOwner(group, owner));
    expect([0x18, 0x19].map((sid) => armSmmuSteConfigName(lab.smmu.strtab.readSte(sid)))).toEqual(['abort', 'abort']);
    await runIn(lab, iommuGroupReleaseDmaOwner(group));
    expect([0x18, 0x19].map((sid) => armSmmuSteConfigName(lab.smmu.strtab.readSte(sid)))).toEqual(['s1', 's1']);
  });

  it('the blocked domain turns ATS off in the function (after the STE stops allowing it) and the default domain turns it back on', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const pdev = deviceOf(lab, V3.accel) as PciDevice;
    const group = iommuGroupGet(pdev)!;
    expect(pdev.features.atsEnabled).toBe(true);
    await runIn(lab, iommuGroupClaimDmaOwner(group, {}));
    expect(pdev.features.atsEnabled).toBe(false);
    expect(armSmmuV3MasterOf(pdev)!.atsEnabled).toBe(false);
    expect(STRTAB_STE_1_EATS.get(lab.smmu.strtab.readSte(0x08))).toBe(0);
    await runIn(lab, iommuGroupReleaseDmaOwner(group));
    expect(pdev.features.atsEnabled).toBe(true);
    expect(STRTAB_STE_1_EATS.get(lab.smmu.strtab.readSte(0x08))).toBe(1);
  });

  it('capable(): coherent walks, no-exec and deferred flush yes; dirty tracking not without HTTU', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const dev = deviceOf(lab, V3.engine);
    expect((['CACHE_COHERENCY', 'NOEXEC', 'DEFERRED_FLUSH', 'DIRTY_TRACKING'] as const).map((c) => deviceIommuCapable(dev, c))).toEqual([true, true, true, false]);
  });

  it('allocation flags: stage 2 for a nesting parent; dirty tracking without HTTU and PASID on stage 2 are EOPNOTSUPP', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const dev = deviceOf(lab, V3.engine);
    expect((iommuPagingDomainAllocFlags(dev, IOMMU_HWPT_ALLOC_NEST_PARENT) as ArmSmmuDomain).stage).toBe('S2');
    expect((iommuPagingDomainAllocFlags(dev, IOMMU_HWPT_ALLOC_PASID) as ArmSmmuDomain).stage).toBe('S1');
    await expectErrno(() => iommuPagingDomainAllocFlags(dev, IOMMU_HWPT_ALLOC_DIRTY_TRACKING), 'EOPNOTSUPP');
    await expectErrno(() => iommuPagingDomainAllocFlags(dev, IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID), 'EOPNOTSUPP');
    await expectErrno(() => iommuPagingDomainAllocFlags(dev, 1 << 20), 'EOPNOTSUPP');
  });
});
