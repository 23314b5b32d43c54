/**
 * The iommufd-style objects on the mock IOMMU: IOAS map/unmap rules, device bind (DMA ownership
 * taken from the host driver), HWPT allocation and attach, object lifetimes (EBUSY while used), the
 * errnos the kernel returns for each misuse, the vEVENTQ's sequence numbers and LOST_EVENTS, and the
 * fault queue's host-generated cookies (a forged or stale cookie is refused, the hardware's group
 * index goes back to the device).
 */
import { describe, expect, it } from 'vitest';
import { iommuGroupGet } from '../../core/iommu-group.js';
import {
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_FAULT_ID_VALID,
  IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
  IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
  IommufdCtx,
  IommufdVeventq,
  IommufdViommu,
} from '../../core/iommufd.js';
import { IOMMU_PAGE_RESP_SUCCESS } from '../../core/iommu-fault-types.js';
import { iommuReportDeviceFault } from '../../core/iommu-fault.js';
import { iommuDevFeatureEnabled } from '../../core/iommu.js';
import { iommuIovaToPhys } from '../../core/iommu-domain.js';
import { platformBus } from '../../bus/platform.js';
import { DEV_A, pageRequest, settle, type PageResponseCall } from './fault-rig.js';
import { MASTER_COMPATIBLE, mockRig } from './mock-rig.js';
import { expectErrno } from '../lib/errno.js';

/**
 * The fault rig's mock IOMMU, with A's host driver an ordinary one (the driver core does its DMA
 * configuration), so binding A to iommufd has a driver to take it from.
 */
async function setup() {
  const s = await mockRig({ masters: [{ name: DEV_A, ids: [[1]], props: { 'dma-can-stall': true } }], mock: { maxPasids: 1 << 10 } });
  await s.k.core.registerDriver({ name: 'host-driver', bus: platformBus, ofMatchTable: [MASTER_COMPATIBLE], probe: () => Promise.resolve() });
  const responses: PageResponseCall[] = [];
  s.mock.ops.pageResponse = (dev, evt, msg) => {
    responses.push({ dev: dev.name, evt, msg: { ...msg } });
  };
  s.mock.ops.devEnableFeat = () => undefined;
  return { ...s, a: s.dev(DEV_A), responses, ctx: new IommufdCtx() };
}

describe('iommufd IOAS', () => {
  it('maps into every HWPT of the IOAS, including ones allocated later; EINVAL unaligned, EEXIST overlapping, ENOENT for holes and straddles', async () => {
    const s = await setup();
    const devId = await s.k.run(s.ctx.bindDevice(s.a));
    const ioas = s.ctx.ioasAlloc();
    const h1 = await s.k.run(s.ctx.hwptAlloc({ devId, ptId: ioas }));
    await s.k.run(s.ctx.ioasMap(ioas, 0x10_0000, 0x4100_0000, 0x2000));
    const h2 = await s.k.run(s.ctx.hwptAlloc({ devId, ptId: ioas }));
    expect(iommuIovaToPhys(s.ctx.hwpt(h1).domain, 0x10_1000)).toBe(0x4100_1000);
    expect(iommuIovaToPhys(s.ctx.hwpt(h2).domain, 0x10_1000)).toBe(0x4100_1000);
    await expectErrno(s.k.run(s.ctx.ioasMap(ioas, 0x10_0800, 0x4100_0000, 0x1000)), 'EINVAL');
    await expectErrno(s.k.run(s.ctx.ioasMap(ioas, 0x10_1000, 0x4200_0000, 0x1000)), 'EEXIST');
    await expectErrno(s.k.run(s.ctx.ioasUnmap(ioas, 0x20_0000, 0x1000)), 'ENOENT');
    await expectErrno(s.k.run(s.ctx.ioasUnmap(ioas, 0x10_1000, 0x1000)), 'ENOENT');
    expect(await s.k.run(s.ctx.ioasUnmap(ioas, 0x10_0000, 0x2000))).toBe(0x2000);
    expect(iommuIovaToPhys(s.ctx.hwpt(h1).domain, 0x10_1000)).toBe(0);
    await expectErrno(() => s.ctx.ioasAlloc() && s.ctx.ioas(999), 'ENOENT');
  });
});

describe('iommufd devices and HWPTs', () => {
  it('bind takes the device from its host driver and the group to the blocking domain; a second bind is EBUSY', async () => {
    const s = await setup();
    expect(s.a.driver).not.toBeNull();
    const devId = await s.k.run(s.ctx.bindDevice(s.a));
    const group = iommuGroupGet(s.a)!;
    expect(s.a.driver).toBeNull();
    expect(group.owner).toBe(s.ctx);
    expect(group.domain).toBe(group.blockingDomain);
    await expectErrno(s.k.run(s.ctx.bindDevice(s.a)), 'EBUSY');
    const ioas = s.ctx.ioasAlloc();
    const hwpt = await s.k.run(s.ctx.attach(devId, ioas));
    expect(group.domain).toBe(s.ctx.hwpt(hwpt).domain);
    await s.k.run(s.ctx.unbindDevice(devId));
    expect(group.owner).toBeNull();
    expect(group.domain).toBe(group.defaultDomain);
  });

  it('errnos: unknown flags or a nest parent the driver cannot make EOPNOTSUPP, fault ID without its flag EINVAL, unknown IDs ENOENT, a non-parent EINVAL, an object in use EBUSY', async () => {
    const s = await setup();
    const devId = await s.k.run(s.ctx.bindDevice(s.a));
    const ioas = s.ctx.ioasAlloc();
    await expectErrno(s.k.run(s.ctx.hwptAlloc({ devId, ptId: ioas, flags: 1 << 9 })), 'EOPNOTSUPP');
    const fault = s.ctx.faultQueueAlloc();
    await expectErrno(s.k.run(s.ctx.hwptAlloc({ devId, ptId: ioas, faultId: fault })), 'EINVAL');
    await expectErrno(s.k.run(s.ctx.hwptAlloc({ devId, ptId: 12345 })), 'ENOENT');
    const plain = await s.k.run(s.ctx.hwptAlloc({ devId, ptId: ioas }));
    await expectErrno(() => s.ctx.viommuAlloc(devId, plain, IOMMU_VIOMMU_TYPE_ARM_SMMUV3), 'EINVAL');
    // The mock IOMMU cannot nest: no stage 2 parent, so no vIOMMU either.
    await expectErrno(s.k.run(s.ctx.hwptAlloc({ devId, ptId: ioas, flags: IOMMU_HWPT_ALLOC_NEST_PARENT })), 'EOPNOTSUPP');
    await s.k.run(s.ctx.attach(devId, plain));
    await expectErrno(s.k.run(s.ctx.destroy(plain)), 'EBUSY');
    await expectErrno(s.k.run(s.ctx.destroy(ioas)), 'EBUSY');
    await expectErrno(s.k.run(s.ctx.detach(12345)), 'ENOENT');
    await s.k.run(s.ctx.close());
    expect(s.ctx.objectCount).toBe(0);
    expect(iommuGroupGet(s.a)!.owner).toBeNull();
  });
});

describe('iommufd vEVENTQ', () => {
  it('records carry sequence numbers; an overflow drops the tail and leaves one LOST_EVENTS header', async () => {
    const ctx = new IommufdCtx();
    const viommu = new IommufdViommu(1, IOMMU_VIOMMU_TYPE_ARM_SMMUV3, null as never, null as never);
    const q = new IommufdVeventq(2, viommu, 1, 2);
    viommu.veventqs.set(2, q);
    for (let i = 0; i < 4; i++) viommu.reportEvent(1, Uint32Array.of(i));
    expect(q.read()).toMatchObject({ flags: 0, sequence: 0 });
    expect(q.read()!.data[0]).toBe(1);
    const lost = q.read()!;
    expect(lost.flags).toBe(IOMMU_VEVENTQ_FLAG_LOST_EVENTS);
    expect(q.read()).toBeNull();
    await expectErrno(() => viommu.reportEvent(7, Uint32Array.of(0)), 'EOPNOTSUPP');
    expect(ctx.objectCount).toBe(0);
  });
});

describe('iommufd fault queue with host cookies', () => {
  it('a page request reaches user space with a cookie, not the hardware PRGI; forged and stale cookies are EINVAL; the right one answers the device', async () => {
    const s = await setup();
    const devId = await s.k.run(s.ctx.bindDevice(s.a));
    const ioas = s.ctx.ioasAlloc();
    const fault = s.ctx.faultQueueAlloc();
    const hwpt = await s.k.run(s.ctx.hwptAlloc({ devId, ptId: ioas, flags: IOMMU_HWPT_FAULT_ID_VALID, faultId: fault }));
    // Attaching a fault-capable HWPT turns the device's I/O page faults on.
    expect(iommuDevFeatureEnabled(s.a, 'IOPF')).toBe(false);
    await s.k.run(s.ctx.attach(devId, hwpt));
    expect(iommuDevFeatureEnabled(s.a, 'IOPF')).toBe(true);
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x5000, 0x1a3, { privateData: [0xdead, 0xbeef] }))).toBe(0);
    await settle(s);
    const f = s.ctx.fault(fault);
    const rec = f.read()!;
    expect(rec.devId).toBe(devId);
    expect(rec.addr).toBe(0x5000);
    expect(rec.cookie).toBeGreaterThan(0);
    expect(Object.keys(rec)).not.toContain('privateData');
    await expectErrno(() => f.respond(rec.cookie + 100, IOMMU_PAGE_RESP_SUCCESS), 'EINVAL');
    expect(s.responses).toHaveLength(0);
    f.respond(rec.cookie, IOMMU_PAGE_RESP_SUCCESS);
    expect(s.responses.map((r) => [r.dev, r.msg.grpid, r.msg.code])).toEqual([[s.a.name, 0x1a3, IOMMU_PAGE_RESP_SUCCESS]]);
    await expectErrno(() => f.respond(rec.cookie, IOMMU_PAGE_RESP_SUCCESS), 'EINVAL');
    expect(s.responses).toHaveLength(1);
  });
});
