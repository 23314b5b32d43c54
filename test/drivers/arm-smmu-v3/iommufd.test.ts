/**
 * arm-smmu-v3 under iommufd, host side only (no guest yet): a user-space caller binds the platform
 * test engine, builds a nest-parent stage 2 over an IOAS, a vSMMU, a vDEVICE with a virtual SID,
 * and a nested HWPT from a hand-written guest STE whose CD and stage 1 tables live at IPAs. Checked:
 * the physical STE (Config nested, VMID, guest fields, MEV), DMA through both stages landing at the
 * right host PA, the guest's forged STE bits and commands refused with EIO, invalidations rewritten
 * with the VMID and the physical SID, a guest fault reaching the vEVENTQ with the virtual SID, and
 * teardown leaving the device on its blocking domain with the VMID freed.
 */
import { describe, expect, it } from 'vitest';
import { iommuGroupGet } from '../../../core/iommu-group.js';
import {
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_DATA_ARM_SMMUV3,
  IOMMU_HW_INFO_TYPE_ARM_SMMUV3,
  IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
  IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
  IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
  IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV,
  IommufdCtx,
} from '../../../core/iommufd.js';
import { armSmmuMakeS1Cd } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-cd.js';
import type { ArmSmmuDomain } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import { armSmmuV3MasterOf } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import {
  CMDQ_0_OP,
  CMDQ_CFGI_0_SID,
  CMDQ_OP_CFGI_CD,
  CMDQ_OP_CFGI_STE,
  CMDQ_OP_TLBI_NH_ALL,
  CMDQ_OP_TLBI_NH_ASID,
  CMDQ_OP_TLBI_NSNH_ALL,
  CMDQ_TLBI_0_ASID,
  CMDQ_TLBI_0_VMID,
  EVTQ_0_ID,
  EVTQ_0_SID,
  EVT_ID_TRANSLATION_FAULT,
  STRTAB_STE_0_CFG,
  STRTAB_STE_0_CFG_ABORT,
  STRTAB_STE_0_CFG_NESTED,
  STRTAB_STE_0_CFG_S1_TRANS,
  STRTAB_STE_0_S1CTXPTR_MASK,
  STRTAB_STE_0_V,
  STRTAB_STE_1_MEV,
  STRTAB_STE_1_S1DSS,
  STRTAB_STE_1_S1DSS_SSID0,
  STRTAB_STE_1_SHCFG,
  STRTAB_STE_2_S2VMID,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { allocPages, bootSmmuV3, deviceOf, runIn, settle, V3, type SmmuV3Lab } from '../../../scenarios/smmu-v3-lab.js';
import { expectErrno } from '../../lib/errno.js';

const SID = 0x101;
const VSID = 0x8;
const PAGE = 4096;
/** Guest "RAM": 64 pages of IPA space at 1 GiB. */
const IPA_BASE = 0x4000_0000;
const GUEST_PAGES = 64;

function w64(lab: SmmuV3Lab, pa: number, lo: number, hi: number): void {
  lab.machine.cpu.ram.write32(pa, lo >>> 0);
  lab.machine.cpu.ram.write32(pa + 4, hi >>> 0);
}

/** A guest: IPA_BASE.. mapped to host pages through an IOAS, and a stage 1 built in that memory. */
interface Guest {
  ctx: IommufdCtx;
  devId: number;
  ioasId: number;
  s2Id: number;
  viommuId: number;
  hostPa: number;
  /** IPA → host PA for guest memory. */
  pa(ipa: number): number;
  cdIpa: number;
  /** The guest STE words for a CD table at cdIpa (linear, one CD). */
  vste(): Uint32Array;
}

async function guestOn(lab: SmmuV3Lab): Promise<Guest> {
  const dev = deviceOf(lab, V3.engine);
  const ctx = new IommufdCtx();
  const devId = await runIn(lab, ctx.bindDevice(dev));
  const ioasId = ctx.ioasAlloc();
  const hostPa = allocPages(lab, GUEST_PAGES * PAGE, 'guest RAM');
  await runIn(lab, ctx.ioasMap(ioasId, IPA_BASE, hostPa, GUEST_PAGES * PAGE));
  const s2Id = await runIn(lab, ctx.hwptAlloc({ devId, ptId: ioasId, flags: IOMMU_HWPT_ALLOC_NEST_PARENT }));
  const viommuId = await ctx.viommuAlloc(devId, s2Id, IOMMU_VIOMMU_TYPE_ARM_SMMUV3);
  ctx.vdeviceAlloc(viommuId, devId, VSID);
  const pa = (ipa: number): number => hostPa + (ipa - IPA_BASE);
  // Guest stage 1 (4K granule, 39-bit VA: levels 1-3) mapping VA 0x1000_0000 → IPA_BASE + 32 pages.
  const cdIpa = IPA_BASE;
  const l1 = IPA_BASE + PAGE;
  const l2 = IPA_BASE + 2 * PAGE;
  const l3 = IPA_BASE + 3 * PAGE;
  const va = 0x1000_0000;
  w64(lab, pa(l1) + Math.floor(va / 2 ** 30) * 8, l2 | 3, 0);
  w64(lab, pa(l2) + (Math.floor(va / 2 ** 21) % 512) * 8, l3 | 3, 0);
  for (let i = 0; i < 4; i++) {
    // Page, AF, inner shareable, AP[1] (unprivileged), nG; AttrIndx 0 (normal memory in MAIR).
    w64(lab, pa(l3) + (((va / PAGE) % 512) + i) * 8, (IPA_BASE + (32 + i) * PAGE) | 0x3 | (1 << 10) | (3 << 8) | (1 << 6) | (1 << 11), 0);
  }
  const cd = new Uint32Array(16);
  armSmmuMakeS1Cd(cd, false, { asid: 7, s1: { ttbr: l1, tcr: { ips: 2, tg: 0, sh: 3, orgn: 1, irgn: 1, tsz: 25, epd1: true }, mair: 0xffn } });
  for (let w = 0; w < 16; w++) lab.machine.cpu.ram.write32(pa(cdIpa) + 4 * w, cd[w]);
  const vste = (): Uint32Array => {
    const s = new Uint32Array(4);
    STRTAB_STE_0_V.prep(s, 1);
    STRTAB_STE_0_CFG.prep(s, STRTAB_STE_0_CFG_S1_TRANS);
    STRTAB_STE_0_S1CTXPTR_MASK.prep(s, cdIpa);
    STRTAB_STE_1_S1DSS.prep(s, STRTAB_STE_1_S1DSS_SSID0);
    return s;
  };
  return { ctx, devId, ioasId, s2Id, viommuId, hostPa, pa, cdIpa, vste };
}

function engine(lab: SmmuV3Lab) {
  return lab.machine.masters.get(V3.engine)!;
}

describe('arm-smmu-v3 nested translation through iommufd objects', () => {
  it('hw_info gives the SMMU ID registers', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const g = await guestOn(lab);
    const info = g.ctx.getHwInfo(g.devId);
    expect(info.type).toBe(IOMMU_HW_INFO_TYPE_ARM_SMMUV3);
    expect(info.data[0]).toBe(lab.model.peek32(0x0));
    expect(info.data[5]).toBe(lab.model.peek32(0x14));
  });

  it('vIOMMU and vDEVICE errnos: a type the SMMU lacks EOPNOTSUPP, a taken virtual ID EEXIST, a wrong data type EINVAL', async () => {
    const lab = await bootSmmuV3({ seed: 7 });
    const g = await guestOn(lab);
    await expectErrno(() => g.ctx.viommuAlloc(g.devId, g.s2Id, IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV), 'EOPNOTSUPP');
    await expectErrno(() => g.ctx.vdeviceAlloc(g.viommuId, g.devId, VSID), 'EEXIST');
    await expectErrno(runIn(lab, g.ctx.hwptAlloc({ devId: g.devId, ptId: g.viommuId, data: { type: 1, words: g.vste() } })), 'EINVAL');
  });

  it('a guest STE becomes a nested STE over the parent stage 2 with its VMID and MEV; DMA lands at the right host PA', async () => {
    const lab = await bootSmmuV3({ seed: 2 });
    const g = await guestOn(lab);
    const hwpt = await runIn(lab, g.ctx.hwptAlloc({ devId: g.devId, ptId: g.viommuId, data: { type: IOMMU_HWPT_DATA_ARM_SMMUV3, words: g.vste() } }));
    await runIn(lab, g.ctx.attach(g.devId, hwpt));
    const ste = lab.smmu.strtab.readSte(SID);
    const parent = g.ctx.hwpt(g.s2Id).domain as ArmSmmuDomain;
    expect(STRTAB_STE_0_CFG.get(ste)).toBe(STRTAB_STE_0_CFG_NESTED);
    expect(STRTAB_STE_2_S2VMID.get(ste)).toBe(parent.vmid);
    expect(parent.vmid).toBeGreaterThan(0);
    expect(STRTAB_STE_0_S1CTXPTR_MASK.get(ste)).toBe(g.cdIpa);
    expect(STRTAB_STE_1_MEV.get(ste)).toBe(1);
    expect(armSmmuV3MasterOf(deviceOf(lab, V3.engine))!.vmaster?.vsid).toBe(VSID);

    const data = Uint8Array.from({ length: 64 }, (_, i) => i + 1);
    const c = await runIn(lab, engine(lab).write(0x1000_0000 + PAGE + 0x40, data));
    expect(c.status).toBe('ok');
    // VA page 1 → IPA_BASE + 33 pages → host PA hostPa + 33 pages.
    expect([...lab.machine.cpu.ram.read(g.hostPa + 33 * PAGE + 0x40, 64)]).toEqual([...data]);
  });

  it('a guest that forges an STE field (SHCFG, a host-owned bit) or Config=nested gets EIO', async () => {
    const lab = await bootSmmuV3({ seed: 3 });
    const g = await guestOn(lab);
    const forged = g.vste();
    STRTAB_STE_1_SHCFG.prep(forged, 1);
    await expectErrno(runIn(lab, g.ctx.hwptAlloc({ devId: g.devId, ptId: g.viommuId, data: { type: IOMMU_HWPT_DATA_ARM_SMMUV3, words: forged } })), 'EIO');
    const nested = g.vste();
    STRTAB_STE_0_CFG.set(nested, STRTAB_STE_0_CFG_NESTED);
    await expectErrno(runIn(lab, g.ctx.hwptAlloc({ devId: g.devId, ptId: g.viommuId, data: { type: IOMMU_HWPT_DATA_ARM_SMMUV3, words: nested } })), 'EIO');
    // An invalid guest STE is allowed: the device aborts.
    const hwpt = await runIn(lab, g.ctx.hwptAlloc({ devId: g.devId, ptId: g.viommuId, data: { type: IOMMU_HWPT_DATA_ARM_SMMUV3, words: new Uint32Array(4) } }));
    await runIn(lab, g.ctx.attach(g.devId, hwpt));
    expect(STRTAB_STE_0_CFG.get(lab.smmu.strtab.readSte(SID))).toBe(STRTAB_STE_0_CFG_ABORT);
  });

  it('invalidations are rewritten: NSNH_ALL → NH_ALL of the VMID, NH_ASID gets the VMID, CFGI_CD gets the physical SID; others are EIO', async () => {
    const lab = await bootSmmuV3({ seed: 4 });
    const g = await guestOn(lab);
    const vmid = (g.ctx.hwpt(g.s2Id).domain as ArmSmmuDomain).vmid;
    const seen: Uint32Array[] = [];
    lab.smmu.cmdq.onCommand = (w, off) => seen.push(w.slice(off, off + 4));
    const cmd = (op: number, f?: (c: Uint32Array) => void): Uint32Array => {
      const c = new Uint32Array(4);
      CMDQ_0_OP.prep(c, op);
      f?.(c);
      return c;
    };
    const n = await runIn(
      lab,
      g.ctx.invalidate(g.viommuId, IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, [
        cmd(CMDQ_OP_TLBI_NSNH_ALL),
        cmd(CMDQ_OP_TLBI_NH_ASID, (c) => {
          CMDQ_TLBI_0_ASID.prep(c, 7);
          CMDQ_TLBI_0_VMID.prep(c, 0x55); // forged VMID
        }),
        cmd(CMDQ_OP_CFGI_CD, (c) => CMDQ_CFGI_0_SID.prep(c, VSID)),
      ]),
    );
    lab.smmu.cmdq.onCommand = null;
    expect(n).toBe(3);
    const ops = seen.map((c) => CMDQ_0_OP.get(c));
    expect(ops.slice(0, 3)).toEqual([CMDQ_OP_TLBI_NH_ALL, CMDQ_OP_TLBI_NH_ASID, CMDQ_OP_CFGI_CD]);
    expect(CMDQ_TLBI_0_VMID.get(seen[0])).toBe(vmid);
    expect(CMDQ_TLBI_0_VMID.get(seen[1])).toBe(vmid);
    expect(CMDQ_TLBI_0_ASID.get(seen[1])).toBe(7);
    expect(CMDQ_CFGI_0_SID.get(seen[2])).toBe(SID);

    // CFGI_STE is the host's; an unknown vSID is EIO; the count says how far it got.
    const err = await expectErrno(runIn(lab, g.ctx.invalidate(g.viommuId, IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, [cmd(CMDQ_OP_TLBI_NH_ALL), cmd(CMDQ_OP_CFGI_STE, (c) => CMDQ_CFGI_0_SID.prep(c, VSID))])), 'EIO');
    expect((err as unknown as { handled: number }).handled).toBe(1);
    await expectErrno(runIn(lab, g.ctx.invalidate(g.viommuId, IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, [cmd(CMDQ_OP_CFGI_CD, (c) => CMDQ_CFGI_0_SID.prep(c, 0x99))])), 'EIO');
    // Through the HWPT instead of the vIOMMU: not how arm-smmu-v3 takes invalidations.
    await expectErrno(runIn(lab, g.ctx.invalidate(g.s2Id, IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, [cmd(CMDQ_OP_TLBI_NH_ALL)])), 'EOPNOTSUPP');
  });

  it('a guest translation fault goes to the vEVENTQ with the virtual SID, not to the host log', async () => {
    const lab = await bootSmmuV3({ seed: 5 });
    const g = await guestOn(lab);
    const q = g.ctx.veventqAlloc(g.viommuId, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, 16);
    const hwpt = await runIn(lab, g.ctx.hwptAlloc({ devId: g.devId, ptId: g.viommuId, data: { type: IOMMU_HWPT_DATA_ARM_SMMUV3, words: g.vste() } }));
    await runIn(lab, g.ctx.attach(g.devId, hwpt));
    const c = await runIn(lab, engine(lab).read(0x2000_0000, 8));
    expect(c.status).not.toBe('ok');
    await settle(lab, 1_000_000);
    const ev = g.ctx.veventq(q).read();
    expect(ev).not.toBeNull();
    expect(EVTQ_0_ID.get(ev!.data)).toBe(EVT_ID_TRANSLATION_FAULT);
    expect(EVTQ_0_SID.get(ev!.data)).toBe(VSID);
    expect(ev!.sequence).toBe(0);
  });

  it('destroying in order frees the nested HWPT, vDEVICE, vIOMMU and VMID; the device ends on its blocking domain', async () => {
    const lab = await bootSmmuV3({ seed: 6 });
    const g = await guestOn(lab);
    const hwpt = await runIn(lab, g.ctx.hwptAlloc({ devId: g.devId, ptId: g.viommuId, data: { type: IOMMU_HWPT_DATA_ARM_SMMUV3, words: g.vste() } }));
    await runIn(lab, g.ctx.attach(g.devId, hwpt));
    const vmid = (g.ctx.hwpt(g.s2Id).domain as ArmSmmuDomain).vmid;
    // In use: EBUSY.
    await expectErrno(runIn(lab, g.ctx.destroy(g.viommuId)), 'EBUSY');
    await expectErrno(runIn(lab, g.ctx.destroy(g.s2Id)), 'EBUSY');
    await runIn(lab, g.ctx.close());
    expect(g.ctx.objectCount).toBe(0);
    expect(lab.smmu.vmidMap.has(vmid)).toBe(false);
    const dev = deviceOf(lab, V3.engine);
    const group = iommuGroupGet(dev)!;
    expect(group.owner).toBeNull();
    expect(group.domain).toBe(group.defaultDomain);
    expect(armSmmuV3MasterOf(dev)!.vmaster).toBeNull();
  });
});
