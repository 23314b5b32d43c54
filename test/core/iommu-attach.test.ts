import { describe, expect, it } from 'vitest';
import { PlatformDevice } from '../../bus/platform.js';
import {
  iommuAttachDevice,
  iommuAttachGroup,
  iommuAttachGroupHandle,
  iommuDetachDevice,
  iommuDetachGroupHandle,
  iommuDeviceClaimDmaOwner,
  iommuDeviceReleaseDmaOwner,
  iommuDeviceUnuseDefaultDomain,
  iommuDeviceUseDefaultDomain,
  iommuGetDomainForDev,
  iommuGroupClaimDmaOwner,
  iommuGroupDmaOwnerClaimed,
  iommuGroupReleaseDmaOwner,
  IommuAttachHandle,
} from '../../core/iommu-attach.js';
import { deviceIommuCapable } from '../../core/iommu-device.js';
import {
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_UNMANAGED,
  IOMMU_FAULT_WRITE,
  iommuDomainInit,
  iommuDomainFree,
  iommuPagingDomainAlloc,
  iommuSetFaultHandler,
  reportIommuFault,
} from '../../core/iommu-domain.js';
import { iommuGroupGet } from '../../core/iommu-group.js';
import {
  iommuAllocGlobalPasid,
  iommuAttachDevicePasid,
  iommuAttachHandleGet,
  iommuDetachDevicePasid,
  iommuFreeGlobalPasid,
  IOMMU_PASID_INVALID,
  iommuReplaceDevicePasid,
} from '../../core/iommu-pasid.js';
import { iommuDevDisableFeature, iommuDevEnableFeature } from '../../core/iommu.js';
import { MockIommu, type MockDomain } from './mock-iommu.js';
import { mockRig } from './mock-rig.js';
import { expectErrno } from '../lib/errno.js';

const A = 'dma@10000000';
const B = 'dma@10001000';
const SHARED1 = 'shared@1';
const SHARED2 = 'shared@2';

async function setup(opts: Parameters<typeof mockRig>[0] = {}) {
  const s = await mockRig({
    masters: [
      { name: A, ids: [[1]], props: { 'pasid-num-bits': 4 } },
      { name: B, ids: [[2]] },
      { name: SHARED1, ids: [[9]], props: { 'pasid-num-bits': 4 } },
      { name: SHARED2, ids: [[9]], props: { 'pasid-num-bits': 4 } },
    ],
    mock: { maxPasids: 1 << 6 },
    ...opts,
  });
  const a = s.dev(A);
  return { ...s, a, ga: iommuGroupGet(a)!, shared: iommuGroupGet(s.dev(SHARED1))! };
}

describe('attach and detach (kernel 6.17 rules)', () => {
  it('attaches a driver-managed domain to a one-device group and detaches back to the default', async () => {
    const { k, mock, a, ga } = await setup();
    const def = ga.defaultDomain!;
    const dom = iommuPagingDomainAlloc(a);
    expect(dom.type).toBe(IOMMU_DOMAIN_UNMANAGED);
    expect(dom.owner).toBe(mock.ops);
    await k.run(iommuAttachDevice(dom, a));
    expect(iommuGetDomainForDev(a)).toBe(dom);
    expect(mock.rid.get(a)).toBe(dom);
    expect(mock.callsOf('attach').at(-1)).toEqual({ op: 'attach', dev: a.name, domain: (dom as MockDomain).label, old: (def as MockDomain).label });
    // Busy: the group is on a domain the core does not own.
    await expectErrno(iommuAttachDevice(iommuPagingDomainAlloc(a), a), 'EBUSY');
    await k.run(iommuDetachDevice(dom, a));
    expect(iommuGetDomainForDev(a)).toBe(def);
    expect(mock.rid.get(a)).toBe(def);
  });

  it('refuses devices without a group, multi-device groups and domains of other drivers', async () => {
    const { k, mock, a, shared } = await setup();
    const lone = new PlatformDevice({ name: '/lone@1' });
    await k.core.addDevice(lone, { probe: false });
    await expectErrno(iommuAttachDevice(iommuPagingDomainAlloc(a), lone), 'ENODEV');
    await expectErrno(iommuAttachDevice(iommuPagingDomainAlloc(a), shared.devices[0]), 'EINVAL', /EINVAL.*2 devices/);
    const other = new MockIommu(k.port, k.alloc);
    const foreign = other.ops.domainAllocPagingFlags!(a, 0);
    iommuDomainInit(foreign, IOMMU_DOMAIN_UNMANAGED, other.ops);
    await expectErrno(iommuAttachDevice(foreign, a), 'EINVAL', /EINVAL.*another IOMMU driver/);
    expect(mock.rid.get(a)).toBe(iommuGroupGet(a)!.defaultDomain);
  });

  it('warns and changes nothing when detaching a domain the device is not attached to', async () => {
    const { k, a, ga } = await setup();
    const dom = iommuPagingDomainAlloc(a);
    await k.run(iommuDetachDevice(dom, a));
    expect(ga.domain).toBe(ga.defaultDomain);
    expect(k.core.log.lines('warn').at(-1)!.message).toMatch(/WARNING: iommu_detach_device/);
  });

  it('reverts every device of a group when one device fails to attach', async () => {
    const { mock, shared } = await setup();
    const [d1, d2] = shared.devices;
    const def = shared.defaultDomain as MockDomain;
    const dom = iommuPagingDomainAlloc(d1) as MockDomain;
    mock.failAttach = (domain, dev) => (domain === dom && dev === d2 ? 'ENOSPC' : null);
    await expectErrno(iommuAttachGroup(dom, shared), 'ENOSPC');
    expect(shared.domain).toBe(def);
    expect(mock.rid.get(d1)).toBe(def);
    expect(mock.rid.get(d2)).toBe(def);
    expect(mock.callsOf('attach').slice(-3)).toEqual([
      { op: 'attach', dev: d1.name, domain: dom.label, old: def.label },
      { op: 'attach', dev: d1.name, domain: def.label, old: dom.label },
      { op: 'attach', dev: d2.name, domain: def.label, old: dom.label },
    ]);
  });

  it('reports an attach failure with an errno the core does not pass on as ENODEV', async () => {
    const { k, mock, a } = await setup();
    mock.failAttach = () => 'ETIMEDOUT';
    await expectErrno(k.run(iommuAttachDevice(iommuPagingDomainAlloc(a), a)), 'ENODEV', /^ENODEV: .*ETIMEDOUT/);
  });
});

describe('DMA ownership', () => {
  it('counts DMA API users and keeps owners out while they exist', async () => {
    const { k, mock, a, ga } = await setup();
    await k.run(iommuDeviceUseDefaultDomain(a));
    await k.run(iommuDeviceUseDefaultDomain(a));
    expect(ga.ownerCnt).toBe(2);
    expect(iommuGroupDmaOwnerClaimed(ga)).toBe(true);
    await expectErrno(iommuGroupClaimDmaOwner(ga, 'vfio'), 'EPERM');
    await k.run(iommuDeviceUnuseDefaultDomain(a));
    await k.run(iommuDeviceUnuseDefaultDomain(a));
    await k.run(iommuGroupClaimDmaOwner(ga, 'vfio'));
    expect(ga.domain).toBe(mock.blockedDomain);
    expect(mock.rid.get(a)).toBe(mock.blockedDomain);
    await expectErrno(iommuDeviceUseDefaultDomain(a), 'EBUSY');
    await expectErrno(iommuDeviceClaimDmaOwner(a, 'someone-else'), 'EPERM');
    await k.run(iommuDeviceClaimDmaOwner(a, 'vfio'));
    expect(ga.ownerCnt).toBe(2);
    await k.run(iommuDeviceReleaseDmaOwner(a));
    expect(ga.domain).toBe(mock.blockedDomain);
    await k.run(iommuGroupReleaseDmaOwner(ga));
    expect(ga.owner).toBeNull();
    expect(ga.domain).toBe(ga.defaultDomain);
  });

  it('detaching an owned group returns it to the blocking domain', async () => {
    const { k, mock, a, ga } = await setup();
    await k.run(iommuGroupClaimDmaOwner(ga, 'vfio'));
    const dom = iommuPagingDomainAlloc(a);
    await k.run(iommuAttachDevice(dom, a));
    await k.run(iommuDetachDevice(dom, a));
    expect(ga.domain).toBe(mock.blockedDomain);
  });
});

describe('PASID attach', () => {
  it('attaches, refuses what the kernel refuses, and detaches through the blocked domain', async () => {
    const { k, mock, a, ga } = await setup();
    const dom = iommuPagingDomainAlloc(a) as MockDomain;
    await k.run(iommuAttachDevicePasid(dom, a, 3));
    expect(mock.pasids.get(`${a.name}:3`)).toBe(dom);
    expect(ga.pasidArray.get(3)).toEqual({ domain: dom, handle: null });
    await expectErrno(iommuAttachDevicePasid(dom, a, 3), 'EBUSY');
    await expectErrno(iommuAttachDevicePasid(dom, a, 0), 'EINVAL', /EINVAL.*PASID 0/);
    await expectErrno(iommuAttachDevicePasid(dom, a, 16), 'EINVAL', /EINVAL.*below 16/);
    await expectErrno(iommuAttachDevicePasid(mock.identityDomain!, a, 4), 'EOPNOTSUPP');
    // A group with PASIDs attached cannot change hands.
    await expectErrno(iommuGroupClaimDmaOwner(ga, 'vfio'), 'EBUSY');
    await k.run(iommuDetachDevicePasid(dom, a, 3));
    expect(mock.pasids.has(`${a.name}:3`)).toBe(false);
    expect(mock.callsOf('set-pasid').at(-1)).toEqual({ op: 'set-pasid', dev: a.name, pasid: 3, domain: 'blocked', old: dom.label });
    expect(ga.pasidArray.size).toBe(0);
  });

  it('publishes nothing when set_dev_pasid fails, and undoes the devices already done', async () => {
    const { k, mock, shared } = await setup();
    const [d1, d2] = shared.devices;
    const dom = iommuPagingDomainAlloc(d1) as MockDomain;
    mock.failSetPasid = (_d, dev) => (dev === d2 ? 'ENOMEM' : null);
    await expectErrno(iommuAttachDevicePasid(dom, d1, 5), 'ENOMEM');
    expect(shared.pasidArray.has(5)).toBe(false);
    expect(shared.pasidReserved.size).toBe(0);
    expect(mock.pasids.size).toBe(0);
    expect(mock.callsOf('set-pasid').map((c) => [c.dev, c.domain])).toEqual([
      [d1.name, dom.label],
      [d1.name, 'blocked'],
    ]);
    mock.failSetPasid = null;
    await k.run(iommuAttachDevicePasid(dom, d1, 5));
    expect(mock.pasids.get(`${d2.name}:5`)).toBe(dom);
  });

  it('skips devices of the group that have no PASIDs', async () => {
    const s = await mockRig({ masters: [{ name: 'p@1', ids: [[5]], props: { 'pasid-num-bits': 3 } }, { name: 'q@2', ids: [[5]] }], mock: { maxPasids: 64 } });
    const p = s.dev('p@1');
    expect(iommuGroupGet(p)!.devices).toHaveLength(2);
    const dom = iommuPagingDomainAlloc(p);
    await s.k.run(iommuAttachDevicePasid(dom, p, 7));
    expect([...s.mock.pasids.keys()]).toEqual(['/p@1:7']);
    // The PASID range check applies to devices with PASIDs only.
    await expectErrno(iommuAttachDevicePasid(dom, p, 8), 'EINVAL', /EINVAL.*below 8/);
  });

  it('replaces a PASID attachment in place, keeping the old one on failure', async () => {
    const { k, mock, a, ga } = await setup();
    const d1 = iommuPagingDomainAlloc(a) as MockDomain;
    const d2 = iommuPagingDomainAlloc(a) as MockDomain;
    const h1 = new IommuAttachHandle();
    const h2 = new IommuAttachHandle();
    await expectErrno(iommuReplaceDevicePasid(d1, a, 2, h1), 'EINVAL', /EINVAL.*not attached/);
    await k.run(iommuAttachDevicePasid(d1, a, 2, h1));
    expect(h1.domain).toBe(d1);
    await expectErrno(iommuReplaceDevicePasid(d2, a, 2, null), 'EINVAL', /EINVAL.*handle/);
    await expectErrno(iommuReplaceDevicePasid(d2, a, 2, h1), 'EINVAL', /EINVAL.*already uses/);
    mock.failSetPasid = () => 'EBUSY';
    await expectErrno(iommuReplaceDevicePasid(d2, a, 2, h2), 'EBUSY');
    expect(ga.pasidArray.get(2)!.domain).toBe(d1);
    expect(mock.pasids.get(`${a.name}:2`)).toBe(d1);
    mock.failSetPasid = null;
    await k.run(iommuReplaceDevicePasid(d2, a, 2, h2));
    expect(mock.callsOf('set-pasid').at(-1)).toEqual({ op: 'set-pasid', dev: a.name, pasid: 2, domain: d2.label, old: d1.label });
    expect(iommuAttachHandleGet(ga, 2, 0)).toBe(h2);
  });

  it('finds attach handles by PASID and type', async () => {
    const { k, a, ga } = await setup();
    const dom = iommuPagingDomainAlloc(a);
    await k.run(iommuAttachDevicePasid(dom, a, 1));
    await expectErrno(() => iommuAttachHandleGet(ga, 1, 0), 'ENOENT');
    const h = new IommuAttachHandle();
    await k.run(iommuAttachDevicePasid(dom, a, 2, h));
    expect(iommuAttachHandleGet(ga, 2, IOMMU_DOMAIN_UNMANAGED)).toBe(h);
    await expectErrno(() => iommuAttachHandleGet(ga, 2, IOMMU_DOMAIN_DMA_FQ), 'EBUSY');
    await expectErrno(() => iommuAttachHandleGet(ga, 9, 0), 'ENOENT');
  });

  it('publishes a RID attach handle at PASID 0', async () => {
    const { k, a, ga } = await setup();
    const dom = iommuPagingDomainAlloc(a);
    const h = new IommuAttachHandle();
    await k.run(iommuAttachGroupHandle(dom, ga, h));
    expect(ga.domain).toBe(dom);
    expect(iommuAttachHandleGet(ga, 0, 0)).toBe(h);
    await expectErrno(iommuAttachGroupHandle(dom, ga, new IommuAttachHandle()), 'EBUSY');
    await k.run(iommuDetachGroupHandle(dom, ga));
    expect(ga.domain).toBe(ga.defaultDomain);
    await expectErrno(() => iommuAttachHandleGet(ga, 0, 0), 'ENOENT');
  });

  it('allocates global PASIDs in [1, max_pasids - 1]', async () => {
    const { k, a, dev } = await setup();
    const b = dev(B);
    expect(iommuAllocGlobalPasid(b)).toBe(IOMMU_PASID_INVALID);
    const got: number[] = [];
    for (let i = 0; i < 16; i++) got.push(iommuAllocGlobalPasid(a));
    expect(got.slice(0, 15)).toEqual([...Array(15).keys()].map((i) => i + 1));
    expect(got[15]).toBe(IOMMU_PASID_INVALID);
    iommuFreeGlobalPasid(k.iommu, 7);
    expect(iommuAllocGlobalPasid(a)).toBe(7);
    await expectErrno(() => iommuFreeGlobalPasid(k.iommu, IOMMU_PASID_INVALID), 'EINVAL');
  });
});

describe('domain fault handlers, capabilities and features', () => {
  it('reports a fault to the installed handler, ENOSYS without one', async () => {
    const { a } = await setup();
    const dom = iommuPagingDomainAlloc(a);
    expect(await reportIommuFault(dom, a, 0x1000, IOMMU_FAULT_WRITE)).toBe('ENOSYS');
    const seen: unknown[] = [];
    iommuSetFaultHandler(
      dom,
      async (d, dev, iova, flags, token) => {
        seen.push([d, dev, iova, flags, token]);
        return 'EAGAIN' as const;
      },
      'tok',
    );
    expect(await reportIommuFault(dom, a, 0x2000, IOMMU_FAULT_WRITE)).toBe('EAGAIN');
    expect(seen).toEqual([[dom, a, 0x2000, IOMMU_FAULT_WRITE, 'tok']]);
    // A DMA domain's cookie is the DMA API's.
    await expectErrno(() => iommuSetFaultHandler(iommuGroupGet(a)!.defaultDomain!, () => 0), 'EBUSY', /EBUSY.*dma-iova/);
  });

  it('frees a domain once', async () => {
    const { mock, a } = await setup();
    const dom = iommuPagingDomainAlloc(a) as MockDomain;
    await iommuDomainFree(dom);
    expect(mock.callsOf('free').map((c) => c.domain)).toEqual([dom.label]);
    await expect(iommuDomainFree(dom)).rejects.toThrow(/freed twice/);
  });

  it('answers capability queries from the driver', async () => {
    const { a, k } = await setup();
    expect(deviceIommuCapable(a, 'DEFERRED_FLUSH')).toBe(true);
    expect(deviceIommuCapable(a, 'NOEXEC')).toBe(false);
    const lone = new PlatformDevice({ name: '/lone@2' });
    await k.core.addDevice(lone, { probe: false });
    expect(deviceIommuCapable(lone, 'CACHE_COHERENCY')).toBe(false);
  });

  it('refuses device features the driver does not implement as the old API did', async () => {
    const { a } = await setup();
    await expectErrno(iommuDevEnableFeature(a, 'IOPF'), 'ENODEV');
    await expectErrno(iommuDevDisableFeature(a, 'SVA'), 'EBUSY');
  });
});
