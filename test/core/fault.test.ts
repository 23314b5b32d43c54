import { describe, expect, it } from 'vitest';
import { PlatformDevice } from '../../bus/platform.js';
import { devFaultParam, iopfGroupResponse } from '../../core/io-pgfault.js';
import { faultResult, iommuFaultDeviceRelease, iommuReportDeviceFault, settledFaultResult } from '../../core/iommu-fault.js';
import {
  iommuPageResponse,
  iommuRegisterDeviceFaultHandler,
  iommuUnregisterDeviceFaultHandler,
  IOMMU_PAGE_RESP_PASID_VALID,
  IOMMU_PAGE_RESP_PRIVATE_DATA,
  IOMMU_PAGE_RESP_VERSION_1,
  type IommuPageResponseMsg,
} from '../../core/iommu-fault-legacy.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_FAULT_REASON_PERMISSION,
  IOMMU_FAULT_UNRECOV_ADDR_VALID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuFaultRecord,
  type IopfGroup,
} from '../../core/iommu-fault-types.js';
import { iommuReleaseDevice } from '../../core/iommu.js';
import { faultRig, pageRequest, settle } from './fault-rig.js';
import { expectErrno } from '../lib/errno.js';

const resp = (grpid: number, extra: Partial<IommuPageResponseMsg> = {}): IommuPageResponseMsg => ({
  version: IOMMU_PAGE_RESP_VERSION_1,
  flags: 0,
  pasid: 0,
  grpid,
  code: IOMMU_PAGE_RESP_SUCCESS,
  ...extra,
});

describe('device fault handlers (the 2019 API)', () => {
  it('takes one handler per device and refuses devices without an IOMMU', async () => {
    const s = await faultRig();
    iommuRegisterDeviceFaultHandler(s.a, () => 0);
    await expectErrno(() => iommuRegisterDeviceFaultHandler(s.a, () => 0), 'EBUSY');
    const lone = new PlatformDevice({ name: '/lone@1' });
    await s.k.core.addDevice(lone, { probe: false });
    await expectErrno(() => iommuRegisterDeviceFaultHandler(lone, () => 0), 'EINVAL');
    await expectErrno(() => iommuUnregisterDeviceFaultHandler(lone), 'EINVAL');
    // Nothing registered on B: unregistering is a no-op.
    iommuUnregisterDeviceFaultHandler(s.b);
    iommuUnregisterDeviceFaultHandler(s.a);
    iommuRegisterDeviceFaultHandler(s.a, () => 0);
  });

  it('answers INVALID at once when nobody can handle a page request, partial or last', async () => {
    const s = await faultRig();
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x1000, 7, { partial: true, pasid: 3 }))).toBe('EINVAL');
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x2000, 7, { pasid: 3 }))).toBe('EINVAL');
    expect(s.responses.map((r) => r.msg)).toEqual([
      { pasid: 3, grpid: 7, code: IOMMU_PAGE_RESP_INVALID },
      { pasid: 3, grpid: 7, code: IOMMU_PAGE_RESP_INVALID },
    ]);
    expect(s.responses[1].evt.fault.prm.addr).toBe(0x2000);
  });

  it('gives page requests to the handler and matches responses by PASID and group index', async () => {
    const s = await faultRig();
    const seen: IommuFaultRecord[] = [];
    const groups: (IopfGroup | null)[] = [];
    iommuRegisterDeviceFaultHandler(s.a, (f, data, g) => {
      expect(data).toBe('cookie');
      seen.push(f);
      groups.push(g);
      return 0;
    }, 'cookie');
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x1000, 5, { pasid: 9, partial: true }))).toBe(0);
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x2000, 5, { pasid: 9 }))).toBe(0);
    expect(seen.map((f) => f.type === 'page-req' && f.prm.addr)).toEqual([0x1000, 0x2000]);
    expect(groups[0]).toBeNull();
    expect(groups[1]?.lastFault.fault.prm.addr).toBe(0x2000);
    expect(s.responses).toEqual([]);

    // Wrong group, wrong PASID, no PASID, bad version, unknown flag, bad code: EINVAL, nothing sent.
    await expectErrno(() => iommuPageResponse(s.a, resp(6, { flags: IOMMU_PAGE_RESP_PASID_VALID, pasid: 9 })), 'EINVAL', /EINVAL.*no pending page request matches/);
    await expectErrno(() => iommuPageResponse(s.a, resp(5, { flags: IOMMU_PAGE_RESP_PASID_VALID, pasid: 8 })), 'EINVAL');
    await expectErrno(() => iommuPageResponse(s.a, resp(5)), 'EINVAL');
    await expectErrno(() => iommuPageResponse(s.a, resp(5, { version: 2, flags: IOMMU_PAGE_RESP_PASID_VALID, pasid: 9 })), 'EINVAL', /EINVAL.*version 2/);
    await expectErrno(() => iommuPageResponse(s.a, resp(5, { flags: IOMMU_PAGE_RESP_PASID_VALID | 0x10, pasid: 9 })), 'EINVAL', /EINVAL.*unknown bits/);
    await expectErrno(() => iommuPageResponse(s.a, resp(5, { flags: IOMMU_PAGE_RESP_PASID_VALID, pasid: 9, code: 3 })), 'EINVAL', /EINVAL.*code 3/);
    expect(s.responses).toEqual([]);
    expect(groups[1]!.lastFault).toBeDefined();

    iommuPageResponse(s.a, resp(5, { flags: IOMMU_PAGE_RESP_PASID_VALID, pasid: 9 }));
    expect(s.responses.map((r) => r.msg)).toEqual([{ pasid: 9, grpid: 5, code: IOMMU_PAGE_RESP_SUCCESS }]);
    expect(s.responses[0].evt.fault.prm.addr).toBe(0x2000);
    // The same response again is stale: nothing is pending.
    await expectErrno(() => iommuPageResponse(s.a, resp(5, { flags: IOMMU_PAGE_RESP_PASID_VALID, pasid: 9 })), 'EINVAL', /EINVAL.*no pending PRQ/);
    expect(s.responses).toHaveLength(1);
  });

  it('in-kernel responses: private data is taken from the pending request; wrong data is refused', async () => {
    const s = await faultRig();
    iommuRegisterDeviceFaultHandler(s.a, () => 0);
    const priv = { flags: IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA, privateData: [0xaa, 0xbb] as [number, number] };
    await iommuReportDeviceFault(s.a, pageRequest(0x1000, 2, priv));
    await iommuReportDeviceFault(s.a, pageRequest(0x2000, 3, priv));
    await iommuReportDeviceFault(s.a, pageRequest(0x3000, 4));
    // Wrong data, a PRIVATE_DATA flag without data, or data for a request that had none: EINVAL, nothing sent.
    await expectErrno(() => iommuPageResponse(s.a, resp(2, { flags: IOMMU_PAGE_RESP_PRIVATE_DATA, privateData: [0xaa, 0xbc] })), 'EINVAL', /EINVAL.*no pending page request matches/);
    expect(() => iommuPageResponse(s.a, resp(2, { flags: IOMMU_PAGE_RESP_PRIVATE_DATA }))).toThrow(/carries none/);
    await expectErrno(() => iommuPageResponse(s.a, resp(4, { flags: IOMMU_PAGE_RESP_PRIVATE_DATA, privateData: [0xaa, 0xbb] })), 'EINVAL', /EINVAL.*no pending page request matches/);
    expect(s.responses).toEqual([]);
    // A response without private data answers the request; the driver gets the request's own data.
    iommuPageResponse(s.a, resp(2, { code: IOMMU_PAGE_RESP_INVALID }));
    // One that repeats it exactly is accepted too.
    iommuPageResponse(s.a, resp(3, { flags: IOMMU_PAGE_RESP_PRIVATE_DATA, privateData: [0xaa, 0xbb] }));
    iommuPageResponse(s.a, resp(4));
    expect(s.responses.map((r) => [r.msg.grpid, r.msg.code, r.evt.fault.prm.privateData, r.evt.fault.prm.flags & IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA])).toEqual([
      [2, IOMMU_PAGE_RESP_INVALID, [0xaa, 0xbb], IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA],
      [3, IOMMU_PAGE_RESP_SUCCESS, [0xaa, 0xbb], IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA],
      [4, IOMMU_PAGE_RESP_SUCCESS, [0, 0], 0],
    ]);
    // Answered once: the same response again is stale.
    await expectErrno(() => iommuPageResponse(s.a, resp(2)), 'EINVAL');
    expect(s.responses).toHaveLength(3);
  });

  it('refuses to unregister with pending faults (EBUSY) and allows it once they are answered', async () => {
    const s = await faultRig();
    iommuRegisterDeviceFaultHandler(s.a, () => 0);
    await iommuReportDeviceFault(s.a, pageRequest(0x1000, 1));
    await expectErrno(() => iommuUnregisterDeviceFaultHandler(s.a), 'EBUSY');
    // Still registered and still pending.
    expect(devFaultParam(s.a)!.handler).not.toBeNull();
    await expectErrno(() => iommuRegisterDeviceFaultHandler(s.a, () => 0), 'EBUSY');
    iommuPageResponse(s.a, resp(1));
    iommuUnregisterDeviceFaultHandler(s.a);
    expect(devFaultParam(s.a)!.handler).toBeNull();
  });

  it('answers FAILURE when the handler refuses, throws, or rejects', async () => {
    const s = await faultRig();
    let verdict: () => ReturnType<Parameters<typeof iommuRegisterDeviceFaultHandler>[1]> = () => 'ENOMEM';
    iommuRegisterDeviceFaultHandler(s.a, () => verdict());
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x1000, 1))).toBe('ENOMEM');
    verdict = () => {
      throw new Error('boom');
    };
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x1000, 2))).toBe('EIO');
    verdict = () => Promise.resolve('EAGAIN' as const);
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x1000, 3))).toBe('EAGAIN');
    expect(s.responses.map((r) => [r.msg.grpid, r.msg.code])).toEqual([
      [1, IOMMU_PAGE_RESP_FAILURE],
      [2, IOMMU_PAGE_RESP_FAILURE],
      [3, IOMMU_PAGE_RESP_FAILURE],
    ]);
    // Nothing stays pending: the handler can go.
    iommuUnregisterDeviceFaultHandler(s.a);
  });

  it('lets a handler answer its group from inside the handler', async () => {
    const s = await faultRig();
    iommuRegisterDeviceFaultHandler(s.a, (_f, _d, g) => {
      if (g) iopfGroupResponse(g, IOMMU_PAGE_RESP_SUCCESS);
      return 0;
    });
    await iommuReportDeviceFault(s.a, pageRequest(0x3000, 4, { pasid: 1 }));
    expect(s.responses.map((r) => r.msg)).toEqual([{ pasid: 1, grpid: 4, code: IOMMU_PAGE_RESP_SUCCESS }]);
    expect(devFaultParam(s.a)!.pending.size).toBe(0);
  });

  it('delivers unrecoverable faults to the device handler without any response', async () => {
    const s = await faultRig();
    const evt = {
      fault: {
        type: 'dma-unrecov' as const,
        event: { reason: IOMMU_FAULT_REASON_PERMISSION, flags: IOMMU_FAULT_UNRECOV_ADDR_VALID, pasid: 0, perm: IOMMU_FAULT_PERM_WRITE, addr: 0xdead000, fetchAddr: 0 },
      },
    };
    expect(await iommuReportDeviceFault(s.a, evt)).toBe('EINVAL');
    const dumped: number[] = [];
    iommuRegisterDeviceFaultHandler(s.a, (f) => {
      if (f.type === 'dma-unrecov') dumped.push(f.event.addr);
      return 0;
    });
    expect(await iommuReportDeviceFault(s.a, evt)).toBe(0);
    expect(dumped).toEqual([0xdead000]);
    expect(s.responses).toEqual([]);
    // The first one came before the device had any fault state.
    expect(devFaultParam(s.a)!.stats.unrecoverable).toBe(1);
  });

  it('drains pending faults when the device is removed, and answers later faults INVALID', async () => {
    const s = await faultRig();
    iommuRegisterDeviceFaultHandler(s.a, () => 0);
    await iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: 2 }));
    await iommuReportDeviceFault(s.a, pageRequest(0x2000, 2, { pasid: 2 }));
    const param = devFaultParam(s.a)!;
    expect(param.pending.size).toBe(2);
    expect(iommuFaultDeviceRelease(s.a)).toBe(2);
    expect(s.responses.map((r) => [r.msg.grpid, r.msg.code])).toEqual([
      [1, IOMMU_PAGE_RESP_INVALID],
      [2, IOMMU_PAGE_RESP_INVALID],
    ]);
    expect(param.handler).toBeNull();
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x3000, 3, { pasid: 2 }))).toBe('ENODEV');
    expect(s.responses.at(-1)!.msg).toEqual({ pasid: 2, grpid: 3, code: IOMMU_PAGE_RESP_INVALID });
  });

  it('drains through the core when the device leaves its IOMMU', async () => {
    const s = await faultRig();
    iommuRegisterDeviceFaultHandler(s.b, () => 0);
    await iommuReportDeviceFault(s.b, pageRequest(0x1000, 11));
    const released: boolean[] = [];
    const send = s.mock.ops.pageResponse!;
    s.mock.ops.pageResponse = (dev, evt, msg) => {
      released.push(s.mock.callsOf('release').length > 0);
      return send(dev, evt, msg);
    };
    await s.k.run(iommuReleaseDevice(s.b));
    await settle(s);
    expect(s.responses.map((r) => [r.dev, r.msg.grpid, r.msg.code])).toEqual([[s.b.name, 11, IOMMU_PAGE_RESP_INVALID]]);
    // The answer went out before the driver released the device.
    expect(released).toEqual([false]);
    expect(s.mock.callsOf('release').map((c) => c.dev)).toEqual([s.b.name]);
    expect(s.k.core.log.entries.some((e) => /answered 1 pending page request group/.test(e.message))).toBe(true);
  });
});

describe('settled fault results', () => {
  it('a result the core decided synchronously is known without waiting; any other promise is not', async () => {
    expect(settledFaultResult(faultResult(0))).toBe(0);
    expect(settledFaultResult(faultResult('EINVAL'))).toBe('EINVAL');
    expect(faultResult('EINVAL')).toBe(faultResult('EINVAL'));
    const other = Promise.resolve<0>(0);
    expect(settledFaultResult(other)).toBeUndefined();
    await expect(faultResult('ENODEV')).resolves.toBe('ENODEV');
  });
});
