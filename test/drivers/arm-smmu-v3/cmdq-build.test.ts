/**
 * Pure command encoding and invalidation planning: command words as the SMMUv3 specification lays
 * them out (expected words written out by hand from the field table, not from the driver's
 * definitions), the range-TLBI split of __arm_smmu_tlb_inv_range() and ATC_INV span rounding. The
 * field helpers themselves are tested in test/bus/bitfield.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { ArmSmmuCmdqBatch, armSmmuCmdqBuildCmd, tlbiEnt, type ArmSmmuCmdq, type ArmSmmuCmdqEnt, type CmdqHost } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-cmdq.js';
import type { ArmSmmuDevice } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-device.js';
import { ArmSmmuDomain, armSmmuAtcInvToCmd, armSmmuFillTlbInvRange } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import {
  ARM_SMMU_FEAT_RANGE_INV,
  CMDQ_OP_ATC_INV,
  CMDQ_OP_CFGI_ALL,
  CMDQ_OP_CFGI_CD,
  CMDQ_OP_CMD_SYNC,
  CMDQ_OP_PRI_RESP,
  CMDQ_OP_RESUME,
  CMDQ_OP_TLBI_EL2_VA,
  CMDQ_OP_TLBI_NH_VA,
  CMDQ_OP_TLBI_S2_IPA,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';

function build(ent: ArmSmmuCmdqEnt): number[] {
  const w = new Uint32Array(4);
  expect(armSmmuCmdqBuildCmd(w, 0, ent)).toBe(0);
  return [...w];
}

describe('command encodings', () => {
  it('CMD_SYNC with an MSI address: CS=IRQ, MSH=ISH, MSIAttr=OIWB, MSIAddress[51:2]', () => {
    expect(build({ opcode: CMDQ_OP_CMD_SYNC, sync: { msiaddr: 0x4000_1230 } })).toEqual([0x0fc0_1046, 0, 0x4000_1230, 0]);
  });

  it('CMD_SYNC without one: CS=SEV', () => {
    expect(build({ opcode: CMDQ_OP_CMD_SYNC })).toEqual([0x0fc0_2046, 0, 0, 0]);
  });

  it('CMD_TLBI_NH_VA with range fields', () => {
    const tlbi = { ...tlbiEnt(), asid: 0x1234, vmid: 0, num: 3, scale: 2, leaf: true, ttl: 3, tg: 1, addr: 0x12_3456_7000 };
    expect(build({ opcode: CMDQ_OP_TLBI_NH_VA, tlbi })).toEqual([0x0020_3012, 0x1234_0000, 0x3456_7701, 0x12]);
  });

  it('TLBIs by VA in a row each carry their own fields: a repeat changes only the address, a change of any field or of the opcode shows', () => {
    const tlbi = { ...tlbiEnt(), asid: 0x1234, num: 3, scale: 2, leaf: true, ttl: 3, tg: 1, addr: 0x12_3456_7000 };
    expect(build({ opcode: CMDQ_OP_TLBI_NH_VA, tlbi })).toEqual([0x0020_3012, 0x1234_0000, 0x3456_7701, 0x12]);
    expect(build({ opcode: CMDQ_OP_TLBI_NH_VA, tlbi: { ...tlbi, addr: 0x8000_1000 } })).toEqual([0x0020_3012, 0x1234_0000, 0x8000_1701, 0]);
    expect(build({ opcode: CMDQ_OP_TLBI_NH_VA, tlbi: { ...tlbi, asid: 7 } })).toEqual([0x0020_3012, 0x0007_0000, 0x3456_7701, 0x12]);
    expect(build({ opcode: CMDQ_OP_TLBI_NH_VA, tlbi: { ...tlbi, asid: 7, leaf: false, vmid: 2 } })).toEqual([0x0020_3012, 0x0007_0002, 0x3456_7700, 0x12]);
    // CMD_TLBI_EL2_VA (0x22) has no VMID field.
    expect(build({ opcode: CMDQ_OP_TLBI_EL2_VA, tlbi: { ...tlbi, asid: 7, vmid: 2 } })).toEqual([0x0020_3022, 0x0007_0000, 0x3456_7701, 0x12]);
    expect(build({ opcode: CMDQ_OP_TLBI_NH_VA, tlbi: { ...tlbi, num: 0, scale: 0, ttl: 0, tg: 0 } })).toEqual([0x12, 0x1234_0000, 0x3456_7001, 0x12]);
    // A field that does not fit throws every time, and the next good command is whole.
    expect(() => build({ opcode: CMDQ_OP_TLBI_NH_VA, tlbi: { ...tlbi, num: 32 } })).toThrow(RangeError);
    expect(() => build({ opcode: CMDQ_OP_TLBI_NH_VA, tlbi: { ...tlbi, num: 32 } })).toThrow(RangeError);
    expect(build({ opcode: CMDQ_OP_TLBI_NH_VA, tlbi })).toEqual([0x0020_3012, 0x1234_0000, 0x3456_7701, 0x12]);
  });

  it('CMD_TLBI_S2_IPA carries the VMID, not an ASID', () => {
    const tlbi = { ...tlbiEnt(), asid: 0x55, vmid: 9, addr: 0x8000_0000 };
    expect(build({ opcode: CMDQ_OP_TLBI_S2_IPA, tlbi })).toEqual([0x2a, 9, 0x8000_0000, 0]);
  });

  it('CMD_CFGI_ALL is CFGI_STE_RANGE with Range = 31', () => {
    expect(build({ opcode: CMDQ_OP_CFGI_ALL })).toEqual([0x04, 0, 31, 0]);
  });

  it('CMD_CFGI_CD: SSID, SID and Leaf', () => {
    expect(build({ opcode: CMDQ_OP_CFGI_CD, cfgi: { sid: 0x100, ssid: 5, leaf: true } })).toEqual([0x5005, 0x100, 1, 0]);
  });

  it('CMD_PRI_RESP: SSV, SSID, SID, PRGIndex and Resp', () => {
    const ent: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_PRI_RESP, substreamValid: true, pri: { sid: 8, ssid: 3, grpid: 0x1ff, resp: 2 } };
    expect(build(ent)).toEqual([0x3841, 8, 0x21ff, 0]);
  });

  it('CMD_RESUME: Resp, SID, STAG', () => {
    expect(build({ opcode: CMDQ_OP_RESUME, resume: { sid: 0x100, stag: 0x42, resp: 1 } })).toEqual([0x1044, 0x100, 0x42, 0]);
  });

  it('CMD_ATC_INV of everything of a PASID: SSV, SSID, SID, Size 52', () => {
    const ent: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_ATC_INV };
    armSmmuAtcInvToCmd(7, 0, 0, ent);
    ent.atc!.sid = 0x10;
    expect(build(ent)).toEqual([0x40 | (1 << 11) | (7 << 12), 0x10, 52, 0]);
  });

  it('an unknown opcode is ENOENT; a PRI response code outside DENY/FAIL/SUCC is EINVAL', () => {
    const w = new Uint32Array(4);
    expect(armSmmuCmdqBuildCmd(w, 0, { opcode: 0x7f })).toBe('ENOENT');
    expect(armSmmuCmdqBuildCmd(w, 0, { opcode: CMDQ_OP_PRI_RESP, pri: { sid: 0, ssid: 0, grpid: 0, resp: 3 } })).toBe('EINVAL');
  });

  it('a value too wide for its field is refused, naming the field', () => {
    const w = new Uint32Array(4);
    expect(() => armSmmuCmdqBuildCmd(w, 0, { opcode: CMDQ_OP_RESUME, resume: { sid: 0, stag: 0x1_0000, resp: 1 } })).toThrow(/CMDQ_RESUME_1_STAG/);
  });
});

describe('ATC invalidation spans (arm_smmu_atc_inv_to_cmd)', () => {
  const span = (iova: number, size: number): { addr: number; size: number } => {
    const ent: ArmSmmuCmdqEnt = { opcode: 0 };
    armSmmuAtcInvToCmd(0, iova, size, ent);
    return { addr: ent.atc!.addr, size: ent.atc!.size };
  };

  it('pages [8, 11] are already an aligned span of 4', () => {
    expect(span(8 * 4096, 4 * 4096)).toEqual({ addr: 8 * 4096, size: 2 });
  });

  it('pages [7, 10] need the span [0, 15]', () => {
    expect(span(7 * 4096, 4 * 4096)).toEqual({ addr: 0, size: 4 });
  });

  it('one page is a span of one; addresses above 4 GiB work', () => {
    expect(span(0x12_3456_7000, 4096)).toEqual({ addr: 0x12_3456_7000, size: 0 });
    expect(span(0x1_0000_0000 - 4096, 8192)).toEqual({ addr: 0, size: 21 });
  });
});

describe('range TLBI planning (__arm_smmu_tlb_inv_range)', () => {
  const host: CmdqHost = { name: 'test', port: null as never, log: null as never, options: 0 };
  const plan = (features: number, iova: number, size: number, granule: number, leaf: boolean): { addr: number; num: number; scale: number; tg: number; ttl: number }[] => {
    const batch = new ArmSmmuCmdqBatch({ supportsCmd: null } as unknown as ArmSmmuCmdq, host);
    const domain = new ArmSmmuDomain({ attachDev: () => undefined });
    domain.smmu = { features } as ArmSmmuDevice;
    domain.pgsizeBitmap = 0x1000 | 0x20_0000 | 0x4000_0000;
    const cmd: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_TLBI_NH_VA, tlbi: { ...tlbiEnt(), leaf, asid: 7 } };
    armSmmuFillTlbInvRange(batch, cmd, iova, size, granule, domain);
    const out = [];
    for (let i = 0; i < batch.num; i++) {
      const w = batch.cmds.subarray(i * 4, i * 4 + 4);
      out.push({
        addr: (w[2] & ~0xfff) + w[3] * 2 ** 32,
        num: (w[0] >>> 12) & 0x1f,
        scale: (w[0] >>> 20) & 0x1f,
        tg: (w[2] >>> 10) & 3,
        ttl: (w[2] >>> 8) & 3,
      });
    }
    return out;
  };

  it('33 leaf pages: one page, then a chunk of 32 (NUM 0, SCALE 5), TG 4K, TTL 3', () => {
    expect(plan(ARM_SMMU_FEAT_RANGE_INV, 0x1_0000, 33 * 4096, 4096, true)).toEqual([
      { addr: 0x1_0000, num: 0, scale: 0, tg: 1, ttl: 3 },
      { addr: 0x1_1000, num: 0, scale: 5, tg: 1, ttl: 3 },
    ]);
  });

  it('a 2 MiB leaf block: TTL 2, 512 pages as (NUM+1) << SCALE = 1 << 9', () => {
    expect(plan(ARM_SMMU_FEAT_RANGE_INV, 0x20_0000, 0x20_0000, 0x20_0000, true)).toEqual([{ addr: 0x20_0000, num: 0, scale: 9, tg: 1, ttl: 2 }]);
  });

  it('a non-leaf flush of one page is widened so SCALE and NUM are not both 0', () => {
    expect(plan(ARM_SMMU_FEAT_RANGE_INV, 0x4000, 4096, 4096, false)).toEqual([{ addr: 0x4000, num: 0, scale: 1, tg: 1, ttl: 0 }]);
  });

  it('without IDR3.RIL: one command per granule, no range fields', () => {
    expect(plan(0, 0x3000, 3 * 4096, 4096, true)).toEqual([
      { addr: 0x3000, num: 0, scale: 0, tg: 0, ttl: 0 },
      { addr: 0x4000, num: 0, scale: 0, tg: 0, ttl: 0 },
      { addr: 0x5000, num: 0, scale: 0, tg: 0, ttl: 0 },
    ]);
  });
});
