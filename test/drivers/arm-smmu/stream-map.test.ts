/**
 * Stream-map entry allocation (arm_smmu_find_sme and friends), the packing of `iommus` specifiers
 * into fwspec IDs, and group sharing between masters whose streams share an entry.
 */
import { describe, expect, it } from 'vitest';
import type { IoMem } from '../../../bus/io.js';
import type { PlatformDevice } from '../../../bus/platform.js';
import { armSmmuFindSme } from '../../../drivers/arm-smmu/arm-smmu.js';
import { ARM_SMMU_DEFAULT_PARAMS, ARM_SMMU_V2, ArmSmmuDevice } from '../../../drivers/arm-smmu/arm-smmu-device.js';
import { rig, L } from './rig.js';
import { groupIdOf } from '../../../scenarios/smmu-v2-lab.js';
import { expectErrno } from '../../lib/errno.js';

/** An SMMU with `n` SMRs of which `valid` are in use (no hardware behind it: the search is pure). */
function withSmrs(n: number, valid: { id: number; mask: number }[]): ArmSmmuDevice {
  const smmu = new ArmSmmuDevice({
    dev: {} as PlatformDevice,
    base: {} as IoMem,
    ioaddr: 0,
    version: ARM_SMMU_V2,
    model: 'GENERIC_SMMU',
    params: ARM_SMMU_DEFAULT_PARAMS,
  });
  smmu.numMappingGroups = n;
  smmu.smrs = Array.from({ length: n }, (_, i) => (valid[i] ? { ...valid[i], valid: true } : { id: 0, mask: 0, valid: false }));
  return smmu;
}

describe('armSmmuFindSme', () => {
  it('reuses an entry that covers the new one entirely, takes the first free one otherwise', () => {
    const s = withSmrs(4, [{ id: 0x420, mask: 0x3 }]);
    expect(armSmmuFindSme(s, 0x420, 0x3)).toBe(0);
    expect(armSmmuFindSme(s, 0x421, 0)).toBe(0);
    expect(armSmmuFindSme(s, 0x422, 0x1)).toBe(0);
    expect(armSmmuFindSme(s, 0x500, 0)).toBe(1);
  });

  it('refuses a partial overlap (some stream would match two entries)', async () => {
    const s = withSmrs(4, [{ id: 0x420, mask: 0x3 }]);
    const err = await expectErrno(() => armSmmuFindSme(s, 0x420, 0x7), 'EINVAL');
    expect(String(err)).toContain('overlaps SMR0');
    await expectErrno(() => armSmmuFindSme(s, 0x424, 0x4), 'EINVAL');
  });

  it('is ENOSPC when every entry is taken by something else, and the ID itself with stream indexing', async () => {
    const full = withSmrs(2, [{ id: 1, mask: 0 }, { id: 2, mask: 0 }]);
    await expectErrno(() => armSmmuFindSme(full, 3, 0), 'ENOSPC', /ENOSPC.*all 2 in use/);
    const indexing = withSmrs(0, []);
    indexing.smrs = null;
    expect(armSmmuFindSme(indexing, 0x37, 0)).toBe(0x37);
  });
});

describe('arm-smmu of_xlate and groups', () => {
  it('packs SID | MASK << 16 into the fwspec IDs', async () => {
    const b = await rig();
    expect(b.dev(L.masterA).fwspec!.ids).toEqual([L.sidA]);
    expect(b.dev(L.masterMasked).fwspec!.ids).toEqual([((L.maskMasked << 16) | L.sidMasked) >>> 0]);
  });

  it('takes the SMMU node\'s stream-match-mask for 1-cell specifiers', async () => {
    const b = await rig({ iommuCells: 1, streamMatchMask: 0x7c00 });
    expect(b.dev(L.masterA).fwspec!.ids).toEqual([((0x7c00 << 16) | L.sidA) >>> 0]);
    const smrs = Array.from({ length: b.smmu.numMappingGroups }, (_, i) => b.reg(0x800 + 4 * i));
    expect(smrs).toContain((0x8000_0000 | (0x7c00 << 16) | L.sidA) >>> 0);
  });

  it('rejects specifier cells too wide for SMR.ID / SMR.MASK with EINVAL', async () => {
    const b = await rig();
    const dev = b.dev(L.masterA);
    const ops = (await import('../../../core/iommu-device.js')).devIommuOps(dev);
    const fwspec = { ...dev.fwspec!, ids: [] as number[] };
    ops.ofXlate!(dev, fwspec, [0x123]);
    expect(fwspec.ids).toEqual([0x123]);
    expect(() => ops.ofXlate!(dev, fwspec, [0x1_0000])).toThrow(/does not fit SMR.ID/);
    expect(() => ops.ofXlate!(dev, fwspec, [0x1, 0x1_0000])).toThrow(/does not fit SMR.MASK/);
    // Bad firmware at the driver's boundary: EINVAL, not the RangeError of a driver bug.
    await expectErrno(() => ops.ofXlate!(dev, fwspec, [0x1_0000]), 'EINVAL');
    expect(fwspec.ids).toEqual([0x123]);
  });

  it('puts masters whose streams share an entry in one group, and counts the users', async () => {
    const b = await rig({ extraMasters: [{ path: '/dma@c050000', cells: [L.sidMasked + 1, 0] }] });
    expect(groupIdOf(b.kernel, '/dma@c050000')).toBe(groupIdOf(b.kernel, L.masterMasked));
    const idx = b.smmu.smrs!.findIndex((s) => s.valid && s.id === L.sidMasked);
    expect(b.smmu.s2crs[idx].count).toBe(2);
    // Still one SMR for both.
    expect(b.smmu.smrs!.filter((s) => s.valid).length).toBe(4);
  });

  it('frees an entry when its last user is released, back to FAULT', async () => {
    const b = await rig();
    const idx = b.smmu.smrs!.findIndex((s) => s.valid && s.id === L.sidNoStall);
    await b.run((await import('../../../core/iommu.js')).iommuReleaseDevice(b.dev(L.masterNoStall)));
    expect(b.reg(0x800 + 4 * idx) >>> 31).toBe(0);
    expect(b.reg(0xc00 + 4 * idx)).toBe(2 << 16);
    expect(b.smmu.s2crs[idx].count).toBe(0);
  });
});
