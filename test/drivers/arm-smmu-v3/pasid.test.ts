/**
 * PASIDs: a stage 1 domain attached to a SubstreamID gets its own CD; the RID keeps its domain; the
 * blocked domain's set_dev_pasid clears the CD; with the RID on an identity domain the STE becomes a
 * CD-table STE with S1DSS = bypass and back; stage 2 RIDs refuse PASIDs and PASIDs refuse stage 2.
 */
import { describe, expect, it } from 'vitest';
import { iommuAttachDevice } from '../../../core/iommu-attach.js';
import { IOMMU_HWPT_ALLOC_NEST_PARENT, iommuPagingDomainAlloc, iommuPagingDomainAllocFlags } from '../../../core/iommu-domain.js';
import { iommuAttachDevicePasid, iommuDetachDevicePasid } from '../../../core/iommu-pasid.js';
import { armSmmuV3MasterOf } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import type { ArmSmmuDomain } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import {
  CMDQ_0_OP,
  CMDQ_CFGI_0_SSID,
  CMDQ_CFGI_1_LEAF,
  CMDQ_OP_CFGI_CD,
  CTXDESC_CD_0_ASID,
  CTXDESC_CD_0_V,
  STRTAB_STE_1_S1DSS,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuSteConfigName } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { allocPages, bootSmmuV3, deviceOf, engineJob, fillPhys, mapRange, readPhys, runIn, settle, V3 } from '../../../scenarios/smmu-v3-lab.js';
import { expectErrno } from '../../lib/errno.js';

const SID = 0x100;
const PASID = 5;

describe('PASID attach', () => {
  it('a CD per SubstreamID: DMA with the PASID uses its domain, detach clears the CD', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const dev = deviceOf(lab, V3.stallEngine);
    const master = armSmmuV3MasterOf(dev)!;
    expect(master.ssidBits).toBe(8);
    const domain = iommuPagingDomainAlloc(dev) as ArmSmmuDomain;
    await runIn(lab, iommuAttachDevicePasid(domain, dev, PASID));
    const cd = master.cdTable!.readCd(PASID);
    expect(CTXDESC_CD_0_V.isSet(cd)).toBe(true);
    expect(CTXDESC_CD_0_ASID.get(cd)).toBe(domain.asid);
    expect(master.cdTable!.usedSsids).toBe(1);
    // The RID still translates through its default domain's CD 0.
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(SID))).toBe('s1');
    expect(CTXDESC_CD_0_ASID.get(master.cdTable!.readCd(0))).not.toBe(domain.asid);

    const src = allocPages(lab, 4096);
    const dst = allocPages(lab, 4096);
    fillPhys(lab, src, 4096, 0x3c);
    await mapRange(lab, domain, 0x1000_0000, src, 4096);
    await mapRange(lab, domain, 0x2000_0000, dst, 4096);
    const ok = await engineJob(lab, V3.stallEngine, { op: 'copy', src: 0x1000_0000, dst: 0x2000_0000, len: 4096 }, { ssid: PASID });
    expect(ok.state).toBe('done');
    expect(readPhys(lab, dst, 4096).every((b) => b === 0x3c)).toBe(true);

    await runIn(lab, iommuDetachDevicePasid(domain, dev, PASID));
    expect(CTXDESC_CD_0_V.isSet(master.cdTable!.readCd(PASID))).toBe(false);
    expect(master.cdTable!.usedSsids).toBe(0);
    const gone = await engineJob(lab, V3.stallEngine, { op: 'copy', src: 0x1000_0000, dst: 0x2000_0000, len: 4096 }, { ssid: PASID });
    await settle(lab);
    expect(gone.state).toBe('error');
    expect(lab.smmu.events.map((e) => [e.name, e.sid, e.ssid])).toEqual([['C_BAD_CD', SID, PASID]]);
  });

  it('with the RID on an identity domain: the STE becomes a CD table with S1DSS = bypass, and goes back', async () => {
    const lab = await bootSmmuV3({ seed: 1, bootargs: 'iommu.passthrough=1' });
    const dev = deviceOf(lab, V3.stallEngine);
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(SID))).toBe('bypass');
    const domain = iommuPagingDomainAlloc(dev) as ArmSmmuDomain;
    await runIn(lab, iommuAttachDevicePasid(domain, dev, PASID));
    const ste = lab.smmu.strtab.readSte(SID);
    expect(armSmmuSteConfigName(ste)).toBe('s1');
    expect(STRTAB_STE_1_S1DSS.get(ste)).toBe(1);
    // RID traffic still bypasses: a copy between physical addresses works without any mapping.
    const src = allocPages(lab, 4096);
    const dst = allocPages(lab, 4096);
    fillPhys(lab, src, 4096, 0x5e);
    const rid = await engineJob(lab, V3.stallEngine, { op: 'copy', src, dst, len: 4096 });
    expect(rid.state).toBe('done');
    expect(readPhys(lab, dst, 4096).every((b) => b === 0x5e)).toBe(true);

    await runIn(lab, iommuDetachDevicePasid(domain, dev, PASID));
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(SID))).toBe('bypass');
  });

  it('20 PASID bits: a two-level CD table; a PASID far out gets its own 64 KiB leaf table, published through L1', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const pdev = deviceOf(lab, V3.accel);
    const master = armSmmuV3MasterOf(pdev)!;
    const table = master.cdTable!;
    expect({ s1fmt: table.s1fmt, s1cdmax: table.s1cdmax, l1: table.numL1Ents }).toEqual({ s1fmt: 2, s1cdmax: 20, l1: 1024 });
    expect(table.l2.filter((t) => t !== null).length).toBe(1);
    const pasid = 0x1_2345;
    const domain = iommuPagingDomainAlloc(pdev) as ArmSmmuDomain;
    let leafZeroSyncs = 0;
    lab.smmu.cmdq.onCommand = (w, off) => {
      if (CMDQ_0_OP.get(w, off) === CMDQ_OP_CFGI_CD && CMDQ_CFGI_0_SSID.get(w, off) === pasid && !CMDQ_CFGI_1_LEAF.isSet(w, off)) leafZeroSyncs++;
    };
    await runIn(lab, iommuAttachDevicePasid(domain, pdev, pasid));
    lab.smmu.cmdq.onCommand = null;
    expect(table.l2.flatMap((t, i) => (t ? [i] : []))).toEqual([0, pasid >> 10]);
    expect(leafZeroSyncs).toBe(1);
    expect(CTXDESC_CD_0_ASID.get(table.readCd(pasid))).toBe(domain.asid);
  });

  it('a stage 2 RID domain refuses PASIDs; PASIDs in use refuse a stage 2 RID domain', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const dev = deviceOf(lab, V3.stallEngine);
    const s2 = iommuPagingDomainAllocFlags(dev, IOMMU_HWPT_ALLOC_NEST_PARENT);
    const s1 = iommuPagingDomainAlloc(dev);
    // PASID first, then a stage 2 RID domain: EBUSY.
    await runIn(lab, iommuAttachDevicePasid(s1, dev, PASID));
    await expectErrno(runIn(lab, iommuAttachDevice(s2, dev)), 'EBUSY');
    await runIn(lab, iommuDetachDevicePasid(s1, dev, PASID));
    // Stage 2 RID domain, then a PASID: EINVAL.
    await runIn(lab, iommuAttachDevice(s2, dev));
    await expectErrno(runIn(lab, iommuAttachDevicePasid(s1, dev, PASID)), 'EINVAL');
    // A stage 2 domain cannot be put on a PASID at all.
    expect(armSmmuV3MasterOf(dev)!.cdTable!.usedSsids).toBe(0);
  });
});
