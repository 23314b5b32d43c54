import { describe, expect, it } from 'vitest';
import { devFaultParam } from '../../core/io-pgfault.js';
import { iommuReportDeviceFault } from '../../core/iommu-fault.js';
import {
  IOMMU_PAGE_RESP_PASID_VALID,
  IOMMU_PAGE_RESP_PRIVATE_DATA,
  FAULT_REC_PRM_PRIVATE_DATA,
  IOMMU_FAULT_DMA_UNRECOV,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_QUEUE_FEAT_PRIV_DATA,
  IOMMU_FAULT_QUEUE_INFO_HOST_TOKENS,
  IOMMU_FAULT_QUEUE_INFO_PRIV_DATA,
  IOMMU_FAULT_RECORD_SIZE,
  IOMMU_PAGE_RESPONSE_RECORD_SIZE,
  iommuUserFaultQueueForDomain,
  iommuUserFaultQueueOpen,
  UAPI_FAULT_PAGE_REQUEST_LAST_PAGE,
  UAPI_FAULT_PAGE_REQUEST_PASID_VALID,
  UAPI_FAULT_PAGE_REQUEST_PRIV_DATA,
} from '../../core/iommu-fault-legacy.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_FAULT_REASON_WALK_EABT,
  IOMMU_FAULT_UNRECOV_FETCH_ADDR_VALID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
} from '../../core/iommu-fault-types.js';
import { IOMMU_HWPT_ALLOC_PASID, iommuPagingDomainAllocFlags } from '../../core/iommu-domain.js';
import { iommuAttachDevicePasid } from '../../core/iommu-pasid.js';
import { iommuDevEnableFeature } from '../../core/iommu.js';
import { faultRig, pageRequest, settle } from './fault-rig.js';
import { expectErrno } from '../lib/errno.js';

/** A user-space fault record buffer of `size` bytes with argsz set, garbage after it. */
function recordBuf(argsz: number, size = argsz): Uint8Array {
  const b = new Uint8Array(size).fill(0xee);
  new DataView(b.buffer).setUint32(0, argsz, true);
  return b;
}

interface Resp {
  argsz?: number;
  version?: number;
  flags?: number;
  pasid?: number;
  grpid: number;
  code?: number;
  priv?: [number, number];
  size?: number;
}

/** A page response record as user space writes it. */
function respBuf(r: Resp): Uint8Array {
  const argsz = r.argsz ?? IOMMU_PAGE_RESPONSE_RECORD_SIZE;
  const b = new Uint8Array(r.size ?? argsz);
  const v = new DataView(b.buffer);
  v.setUint32(0, argsz, true);
  v.setUint32(4, r.version ?? 1, true);
  v.setUint32(8, r.flags ?? 0, true);
  v.setUint32(12, r.pasid ?? 0, true);
  v.setUint32(16, r.grpid, true);
  v.setUint32(20, r.code ?? IOMMU_PAGE_RESP_SUCCESS, true);
  if (r.priv && argsz >= 40) {
    v.setBigUint64(24, BigInt(r.priv[0]), true);
    v.setBigUint64(32, BigInt(r.priv[1]), true);
  }
  return b;
}

describe('user-facing fault records', () => {
  it('writes a page-request record at the documented offsets, sized by the caller', async () => {
    const s = await faultRig();
    const q = iommuUserFaultQueueOpen(s.a);
    await iommuReportDeviceFault(s.a, pageRequest(0x1234_5678_9000, 0x1ff, { pasid: 0x42, perm: IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_WRITE }));
    await iommuReportDeviceFault(s.a, pageRequest(0x2000, 3));
    expect(q.length).toBe(2);

    // A newer caller with a bigger structure: this kernel's 72 bytes, then zeros.
    const big = recordBuf(96, 100);
    expect(q.read(big)).toBe(IOMMU_FAULT_RECORD_SIZE);
    const v = new DataView(big.buffer);
    expect(v.getUint32(0, true)).toBe(72);
    expect(v.getUint32(4, true)).toBe(1);
    expect(v.getUint32(8, true)).toBe(IOMMU_FAULT_PAGE_REQ);
    expect(v.getUint32(16, true)).toBe(UAPI_FAULT_PAGE_REQUEST_PASID_VALID | UAPI_FAULT_PAGE_REQUEST_LAST_PAGE);
    expect(v.getUint32(20, true)).toBe(0x42);
    expect(v.getUint32(24, true)).toBe(0x1ff);
    expect(v.getUint32(28, true)).toBe(IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_WRITE);
    expect(v.getBigUint64(32, true)).toBe(0x1234_5678_9000n);
    expect(v.getBigUint64(40, true)).toBe(0n);
    expect([...big.subarray(72, 96)].every((x) => x === 0)).toBe(true);
    // Beyond the caller's argsz the buffer is not touched.
    expect([...big.subarray(96)]).toEqual([0xee, 0xee, 0xee, 0xee]);

    // An older caller with the minimal structure still gets the request.
    const small = recordBuf(40);
    expect(q.read(small)).toBe(40);
    const w = new DataView(small.buffer);
    expect(w.getUint32(0, true)).toBe(40);
    expect(w.getUint32(24, true)).toBe(3);
    expect(w.getBigUint64(32, true)).toBe(0x2000n);
    expect(q.read(recordBuf(72))).toBe(0);

    await expectErrno(() => q.read(recordBuf(39)), 'EINVAL', /EINVAL.*argsz 39 is below 40/);
    await expectErrno(() => q.read(recordBuf(80, 72)), 'EINVAL', /EINVAL.*exceeds/);
  });

  it('writes unrecoverable records and never expects a response for them', async () => {
    const s = await faultRig();
    const q = iommuUserFaultQueueOpen(s.a);
    await iommuReportDeviceFault(s.a, {
      fault: { type: 'dma-unrecov', event: { reason: IOMMU_FAULT_REASON_WALK_EABT, flags: IOMMU_FAULT_UNRECOV_FETCH_ADDR_VALID, pasid: 0, perm: 0, addr: 0x8000, fetchAddr: 0x4_0000_1000 } },
    });
    const b = recordBuf(72);
    q.read(b);
    const v = new DataView(b.buffer);
    expect(v.getUint32(8, true)).toBe(IOMMU_FAULT_DMA_UNRECOV);
    expect(v.getUint32(16, true)).toBe(IOMMU_FAULT_REASON_WALK_EABT);
    expect(v.getUint32(20, true)).toBe(IOMMU_FAULT_UNRECOV_FETCH_ADDR_VALID);
    expect(v.getBigUint64(32, true)).toBe(0x8000n);
    expect(v.getBigUint64(40, true)).toBe(0x4_0000_1000n);
    q.close();
  });

  it('accepts old (24-byte) and new (40-byte) responses and rejects malformed ones without effect', async () => {
    const s = await faultRig();
    const q = iommuUserFaultQueueOpen(s.a);
    await iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: 7 }));
    await iommuReportDeviceFault(s.a, pageRequest(0x2000, 2, { pasid: 7 }));
    const pv = IOMMU_PAGE_RESP_PASID_VALID;
    await expectErrno(() => q.write(respBuf({ grpid: 1, flags: pv, pasid: 7, version: 2 })), 'EINVAL', /EINVAL.*version 2/);
    await expectErrno(() => q.write(respBuf({ grpid: 1, flags: pv | 0x8, pasid: 7 })), 'EINVAL', /EINVAL.*unknown bits/);
    await expectErrno(() => q.write(respBuf({ grpid: 1, flags: pv, pasid: 7, code: 9 })), 'EINVAL', /EINVAL.*code 9/);
    await expectErrno(() => q.write(respBuf({ grpid: 1, flags: pv, pasid: 7, argsz: 20, size: 24 })), 'EINVAL', /EINVAL.*below 24/);
    expect(() => q.write(respBuf({ grpid: 1, flags: pv | IOMMU_PAGE_RESP_PRIVATE_DATA, pasid: 7, argsz: 24 }))).toThrow(/no room/);
    const tooNew = respBuf({ grpid: 1, flags: pv, pasid: 7, argsz: 48 });
    tooNew[44] = 1;
    expect(() => q.write(tooNew)).toThrow(/E2BIG.*byte 44/);
    await expectErrno(() => q.write(respBuf({ grpid: 9, flags: pv, pasid: 7 })), 'EINVAL', /EINVAL.*no pending/);
    expect(s.responses).toEqual([]);
    expect(q.stats.rejected).toBe(7);

    // The first version of the structure (no private data) works.
    expect(q.write(respBuf({ grpid: 1, flags: pv, pasid: 7, argsz: 24 }))).toBe(24);
    // A newer caller's longer structure with zero tail works too.
    expect(q.write(respBuf({ grpid: 2, flags: pv, pasid: 7, argsz: 56, code: IOMMU_PAGE_RESP_INVALID }))).toBe(56);
    expect(s.responses.map((r) => r.msg)).toEqual([
      { pasid: 7, grpid: 1, code: IOMMU_PAGE_RESP_SUCCESS },
      { pasid: 7, grpid: 2, code: IOMMU_PAGE_RESP_INVALID },
    ]);
    // A spurious response (nothing pending) is rejected.
    await expectErrno(() => q.write(respBuf({ grpid: 2, flags: pv, pasid: 7 })), 'EINVAL');
    q.close();
  });

  it('negotiates private data both ways', async () => {
    const s = await faultRig();
    const q = iommuUserFaultQueueOpen(s.a);
    expect(q.info()).toMatchObject({ version: 1, recordSize: 72, responseSize: 40 });
    expect(q.info().flags & IOMMU_FAULT_QUEUE_INFO_PRIV_DATA).not.toBe(0);
    expect(q.info().flags & IOMMU_FAULT_QUEUE_INFO_HOST_TOKENS).toBe(0);
    await expectErrno(() => q.setFeatures(0x2), 'EINVAL');
    const hw = { flags: IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA, privateData: [0x1111, 0x2222] as [number, number] };

    // Old user space (never negotiated): answers without private data; the kernel supplies it.
    await iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, hw));
    const b = recordBuf(72);
    q.read(b);
    const v = new DataView(b.buffer);
    expect(v.getUint32(16, true) & UAPI_FAULT_PAGE_REQUEST_PRIV_DATA).not.toBe(0);
    expect(v.getBigUint64(FAULT_REC_PRM_PRIVATE_DATA, true)).toBe(0x1111n);
    expect(v.getBigUint64(FAULT_REC_PRM_PRIVATE_DATA + 8, true)).toBe(0x2222n);
    q.write(respBuf({ grpid: 1, argsz: 24 }));
    expect(s.responses.at(-1)!.evt.fault.prm.privateData).toEqual([0x1111, 0x2222]);

    // New user space: it says it returns private data; a response without it is refused.
    q.setFeatures(IOMMU_FAULT_QUEUE_FEAT_PRIV_DATA);
    await iommuReportDeviceFault(s.a, pageRequest(0x2000, 2, hw));
    await expectErrno(() => q.write(respBuf({ grpid: 2 })), 'EINVAL', /EINVAL.*negotiated PRIV_DATA/);
    await expectErrno(() => q.write(respBuf({ grpid: 2, flags: IOMMU_PAGE_RESP_PRIVATE_DATA, priv: [0x1111, 0x2223] })), 'EINVAL');
    q.write(respBuf({ grpid: 2, flags: IOMMU_PAGE_RESP_PRIVATE_DATA, priv: [0x1111, 0x2222] }));
    expect(s.responses.map((r) => r.msg.grpid)).toEqual([1, 2]);
  });

  it('substitutes host tokens for private data and rejects a stale token when the group index is reused', async () => {
    const s = await faultRig();
    const q = iommuUserFaultQueueOpen(s.a, { hostTokens: true });
    expect(q.info().flags & IOMMU_FAULT_QUEUE_INFO_HOST_TOKENS).not.toBe(0);
    q.setFeatures(IOMMU_FAULT_QUEUE_FEAT_PRIV_DATA);
    const hw = { pasid: 4, flags: IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA, privateData: [0xfeed, 0xbeef] as [number, number] };
    const tokenOf = (): number => {
      const b = recordBuf(72);
      expect(q.read(b)).toBe(72);
      const v = new DataView(b.buffer);
      expect(v.getBigUint64(FAULT_REC_PRM_PRIVATE_DATA + 8, true)).toBe(0n);
      return Number(v.getBigUint64(FAULT_REC_PRM_PRIVATE_DATA, true));
    };
    await iommuReportDeviceFault(s.a, pageRequest(0x1000, 6, hw));
    const t1 = tokenOf();
    // The hardware's private data never reaches the guest.
    expect(t1).not.toBe(0xfeed);
    const pv = IOMMU_PAGE_RESP_PASID_VALID | IOMMU_PAGE_RESP_PRIVATE_DATA;
    q.write(respBuf({ grpid: 6, pasid: 4, flags: pv, priv: [t1, 0] }));
    expect(s.responses).toHaveLength(1);
    // The host answered with the hardware's own data.
    expect(s.responses[0].evt.fault.prm.privateData).toEqual([0xfeed, 0xbeef]);

    // The device reuses group index 6; the guest's late duplicate of the first answer must not complete it.
    await iommuReportDeviceFault(s.a, pageRequest(0x2000, 6, hw));
    const t2 = tokenOf();
    expect(t2).not.toBe(t1);
    await expectErrno(() => q.write(respBuf({ grpid: 6, pasid: 4, flags: pv, priv: [t1, 0] })), 'EINVAL', /EINVAL.*stale or spurious/);
    expect(s.responses).toHaveLength(1);
    expect(devFaultParam(s.a)!.pending.size).toBe(1);
    // A token that belongs to another request (wrong group index) is refused as well.
    await expectErrno(() => q.write(respBuf({ grpid: 7, pasid: 4, flags: pv, priv: [t2, 0] })), 'EINVAL', /EINVAL.*another request/);
    q.write(respBuf({ grpid: 6, pasid: 4, flags: pv, priv: [t2, 0], code: IOMMU_PAGE_RESP_FAILURE }));
    expect(s.responses.map((r) => [r.evt.fault.prm.addr, r.msg.code])).toEqual([
      [0x1000, IOMMU_PAGE_RESP_SUCCESS],
      [0x2000, IOMMU_PAGE_RESP_FAILURE],
    ]);
    q.close();
  });

  it('refuses new faults when full (FAILURE) and cannot close with faults pending', async () => {
    const s = await faultRig();
    const q = iommuUserFaultQueueOpen(s.a, { depth: 1 });
    await expectErrno(() => iommuUserFaultQueueOpen(s.a), 'EBUSY');
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x1000, 1))).toBe(0);
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x2000, 2))).toBe('ENOSPC');
    expect(s.responses.map((r) => [r.msg.grpid, r.msg.code])).toEqual([[2, IOMMU_PAGE_RESP_FAILURE]]);
    expect(q.stats.overflows).toBe(1);
    await expectErrno(() => q.close(), 'EBUSY');
    q.read(recordBuf(72));
    q.write(respBuf({ grpid: 1 }));
    q.close();
    expect(devFaultParam(s.a)!.handler).toBeNull();
    expect(() => q.write(respBuf({ grpid: 1 }))).toThrow(/closed/);
  });

  it('serves a domain as its I/O page-fault handler (iommufd style): whole groups, from the IOPF queue', async () => {
    const s = await faultRig();
    await s.k.run(iommuDevEnableFeature(s.a, 'IOPF'));
    const domain = iommuPagingDomainAllocFlags(s.a, IOMMU_HWPT_ALLOC_PASID);
    const q = iommuUserFaultQueueForDomain(domain, { hostTokens: true });
    await expectErrno(() => iommuUserFaultQueueForDomain(domain), 'EBUSY');
    let signalled = 0;
    q.onFault = () => signalled++;
    await s.k.run(iommuAttachDevicePasid(domain, s.a, 9));
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 4, { pasid: 9, partial: true }));
    void iommuReportDeviceFault(s.a, pageRequest(0x2000, 4, { pasid: 9 }));
    expect(q.length).toBe(0);
    await settle(s);
    expect(signalled).toBe(1);
    expect(q.length).toBe(2);
    const first = recordBuf(72);
    const second = recordBuf(72);
    q.read(first);
    q.read(second);
    const v1 = new DataView(first.buffer);
    const v2 = new DataView(second.buffer);
    expect(v1.getBigUint64(32, true)).toBe(0x1000n);
    expect(v1.getUint32(16, true) & UAPI_FAULT_PAGE_REQUEST_LAST_PAGE).toBe(0);
    expect(v2.getUint32(16, true) & UAPI_FAULT_PAGE_REQUEST_LAST_PAGE).not.toBe(0);
    const token = Number(v2.getBigUint64(FAULT_REC_PRM_PRIVATE_DATA, true));
    // The partial's token answers nothing.
    const partialToken = Number(v1.getBigUint64(FAULT_REC_PRM_PRIVATE_DATA, true));
    const pv = IOMMU_PAGE_RESP_PASID_VALID | IOMMU_PAGE_RESP_PRIVATE_DATA;
    await expectErrno(() => q.write(respBuf({ grpid: 4, pasid: 9, flags: pv, priv: [partialToken, 0] })), 'EINVAL');
    await expectErrno(() => q.close(), 'EBUSY');
    q.write(respBuf({ grpid: 4, pasid: 9, flags: pv, priv: [token, 0] }));
    expect(s.responses.map((r) => r.msg)).toEqual([{ pasid: 9, grpid: 4, code: IOMMU_PAGE_RESP_SUCCESS }]);
    q.close();
    expect(domain.iopfHandler).toBeNull();
  });

  it('refuses a group that does not fit (the IOPF core answers FAILURE)', async () => {
    const s = await faultRig();
    await s.k.run(iommuDevEnableFeature(s.a, 'IOPF'));
    const domain = iommuPagingDomainAllocFlags(s.a, IOMMU_HWPT_ALLOC_PASID);
    const q = iommuUserFaultQueueForDomain(domain, { depth: 1 });
    await s.k.run(iommuAttachDevicePasid(domain, s.a, 9));
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 4, { pasid: 9, partial: true }));
    void iommuReportDeviceFault(s.a, pageRequest(0x2000, 4, { pasid: 9 }));
    await settle(s);
    expect(q.length).toBe(0);
    expect(q.stats.overflows).toBe(1);
    expect(s.responses.map((r) => r.msg)).toEqual([{ pasid: 9, grpid: 4, code: IOMMU_PAGE_RESP_FAILURE }]);
  });
});
