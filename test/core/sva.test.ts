import { describe, expect, it } from 'vitest';
import { devFaultParam } from '../../core/io-pgfault.js';
import { IOMMU_DOMAIN_SVA } from '../../core/iommu-domain.js';
import { iommuReportDeviceFault } from '../../core/iommu-fault.js';
import {
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
} from '../../core/iommu-fault-types.js';
import { iommuGroupGet } from '../../core/iommu-group.js';
import { IOMMU_PASID_INVALID } from '../../core/iommu-pasid.js';
import { iommuMmPasid, iommuSvaBindDevice, iommuSvaGetPasid, iommuSvaHandleMm, iommuSvaUnbindDevice } from '../../core/iommu-sva.js';
import { iommuDevDisableFeature, iommuDevEnableFeature } from '../../core/iommu.js';
import { PAGE_SIZE } from '../../mm/page-alloc.js';
import { PROT_READ, PROT_WRITE } from '../../mm/prot.js';
import { codes, faultRig, pageRequest, settle, type FaultRig, type FaultRigOptions } from './fault-rig.js';
import { expectErrno } from '../lib/errno.js';

async function svaSetup(opts: FaultRigOptions = {}): Promise<FaultRig> {
  const s = await faultRig(opts);
  for (const d of [s.a, s.b]) {
    await s.k.run(iommuDevEnableFeature(d, 'IOPF'));
    await s.k.run(iommuDevEnableFeature(d, 'SVA'));
  }
  return s;
}

describe('SVA bind and unbind', () => {
  it('binds with a PASID from the global space, refcounts a second bind, and detaches on the last unbind', async () => {
    const s = await svaSetup();
    const proc = s.processes.spawn();
    const bond = await s.k.run(iommuSvaBindDevice(s.a, proc.mm));
    const pasid = iommuSvaGetPasid(bond);
    expect(pasid).toBe(1);
    expect(iommuMmPasid(proc.mm)).toBe(1);
    expect(s.k.iommu.globalPasids.has(1)).toBe(true);
    const domain = bond.domain!;
    expect(domain.type).toBe(IOMMU_DOMAIN_SVA);
    expect(domain.cookie).toMatchObject({ type: 'sva', mm: proc.mm, users: 1 });
    expect(s.mock.pasids.get(`${s.a.name}:1`)).toBe(domain);
    expect(iommuGroupGet(s.a)!.pasidArray.get(1)?.handle).toBe(bond);
    // The domain holds the mm struct.
    expect(proc.mm.count).toBe(1 + 2); // users' ref + domain + the core's notifier

    const again = await s.k.run(iommuSvaBindDevice(s.a, proc.mm));
    expect(again).toBe(bond);
    expect(bond.users).toBe(2);
    await s.k.run(iommuSvaUnbindDevice(bond));
    expect(s.mock.pasids.has(`${s.a.name}:1`)).toBe(true);
    await s.k.run(iommuSvaUnbindDevice(bond));
    expect(s.mock.pasids.has(`${s.a.name}:1`)).toBe(false);
    expect(iommuSvaGetPasid(bond)).toBe(IOMMU_PASID_INVALID);
    expect(domain.isFreed).toBe(true);
    expect(s.svaDomains).toEqual([]);
    await expectErrno(iommuSvaUnbindDevice(bond), 'EINVAL', /EINVAL.*already unbound/);
    // The PASID stays with the live mm: a new bind gets the same one.
    expect(s.k.iommu.globalPasids.has(1)).toBe(true);
    const rebind = await s.k.run(iommuSvaBindDevice(s.a, proc.mm));
    expect(iommuSvaGetPasid(rebind)).toBe(1);
    await s.k.run(iommuSvaUnbindDevice(rebind));
    // Freed when the mm is gone.
    await s.k.run(proc.exit());
    expect(proc.mm.state).toBe('freed');
    expect(s.k.iommu.globalPasids.has(1)).toBe(false);
    expect(iommuMmPasid(proc.mm)).toBe(IOMMU_PASID_INVALID);
  });

  it('gives different processes different PASIDs and shares a domain between devices of one mm', async () => {
    const s = await svaSetup();
    const p1 = s.processes.spawn();
    const p2 = s.processes.spawn();
    const a1 = await s.k.run(iommuSvaBindDevice(s.a, p1.mm));
    const a2 = await s.k.run(iommuSvaBindDevice(s.a, p2.mm));
    const b1 = await s.k.run(iommuSvaBindDevice(s.b, p1.mm));
    expect([a1.pasid, a2.pasid, b1.pasid]).toEqual([1, 2, 1]);
    expect(b1.domain).toBe(a1.domain);
    expect(a1.domain!.cookie).toMatchObject({ users: 2 });
    expect(s.svaDomains).toHaveLength(2);
    await s.k.run(iommuSvaUnbindDevice(a1));
    expect(a1.domain!.isFreed).toBe(false);
    await s.k.run(iommuSvaUnbindDevice(b1));
    expect(a1.domain!.isFreed).toBe(true);
    await s.k.run(iommuSvaUnbindDevice(a2));
  });

  it('runs out of PASIDs with ENOSPC and refuses a device whose PASIDs cannot reach the mm (EOVERFLOW)', async () => {
    // 2 bits: PASIDs 1..3 on A; B has 1 bit: only PASID 1.
    const s = await svaSetup({ pasidBitsA: 2, pasidBitsB: 1 });
    const procs = [0, 1, 2, 3].map(() => s.processes.spawn());
    const bonds = [];
    for (const p of procs.slice(0, 3)) bonds.push(await s.k.run(iommuSvaBindDevice(s.a, p.mm)));
    expect(bonds.map((b) => b.pasid)).toEqual([1, 2, 3]);
    await expectErrno(s.k.run(iommuSvaBindDevice(s.a, procs[3].mm)), 'ENOSPC');
    expect(iommuMmPasid(procs[3].mm)).toBe(IOMMU_PASID_INVALID);
    await expectErrno(s.k.run(iommuSvaBindDevice(s.b, procs[1].mm)), 'EOVERFLOW', /^EOVERFLOW: .*supports PASIDs below/);
    const ok = await s.k.run(iommuSvaBindDevice(s.b, procs[0].mm));
    expect(ok.pasid).toBe(1);
  });

  it('needs SVA enabled, a live mm, and keeps SVA on while bonds exist', async () => {
    const s = await faultRig();
    const proc = s.processes.spawn();
    await expectErrno(iommuSvaBindDevice(s.a, proc.mm), 'ENODEV', /ENODEV.*SVA is not enabled/);
    await s.k.run(iommuDevEnableFeature(s.a, 'IOPF'));
    await s.k.run(iommuDevEnableFeature(s.a, 'SVA'));
    const bond = await s.k.run(iommuSvaBindDevice(s.a, proc.mm));
    await expectErrno(iommuDevDisableFeature(s.a, 'SVA'), 'EBUSY');
    await s.k.run(iommuSvaUnbindDevice(bond));
    await s.k.run(iommuDevDisableFeature(s.a, 'SVA'));
    await s.k.run(iommuDevEnableFeature(s.a, 'SVA'));
    const dead = s.processes.spawn();
    await s.k.run(dead.exit());
    await expectErrno(s.k.run(iommuSvaBindDevice(s.a, dead.mm)), 'EINVAL', /EINVAL.*exited/);
  });

  it('frees the domain and drops its mm reference when the attach fails', async () => {
    const s = await svaSetup();
    const proc = s.processes.spawn();
    s.mock.failSetPasid = () => 'ENOMEM';
    await expectErrno(s.k.run(iommuSvaBindDevice(s.a, proc.mm)), 'ENOMEM');
    expect(s.svaDomains).toEqual([]);
    expect(proc.mm.count).toBe(1);
    s.mock.failSetPasid = null;
    s.failSva.alloc = true;
    await expectErrno(s.k.run(iommuSvaBindDevice(s.a, proc.mm)), 'ENOMEM', /ENOMEM.*SVA domain/);
  });
});

describe('SVA I/O page faults', () => {
  it('resolves page requests through the mm and answers each group once', async () => {
    const s = await svaSetup();
    const proc = s.processes.spawn();
    const mm = proc.mm;
    const buf = mm.mmap(4 * PAGE_SIZE, PROT_READ | PROT_WRITE);
    const ro = mm.mmap(PAGE_SIZE, PROT_READ);
    const bond = await s.k.run(iommuSvaBindDevice(s.a, mm));
    const pasid = bond.pasid;
    expect(mm.translate(buf)).toBeNull();

    // A three-request group: all resolved, one SUCCESS.
    void iommuReportDeviceFault(s.a, pageRequest(buf, 1, { pasid, partial: true, perm: IOMMU_FAULT_PERM_WRITE }));
    void iommuReportDeviceFault(s.a, pageRequest(buf + PAGE_SIZE, 1, { pasid, partial: true, perm: IOMMU_FAULT_PERM_WRITE }));
    void iommuReportDeviceFault(s.a, pageRequest(buf + 2 * PAGE_SIZE, 1, { pasid, perm: IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_WRITE }));
    await settle(s);
    expect(s.responses.map((r) => r.msg)).toEqual([{ pasid, grpid: 1, code: IOMMU_PAGE_RESP_SUCCESS }]);
    expect(mm.translate(buf)).not.toBeNull();
    expect(mm.translate(buf + 2 * PAGE_SIZE)).not.toBeNull();
    expect(mm.translate(buf + 3 * PAGE_SIZE)).toBeNull();
    expect(mm.rss).toBe(3);

    // Outside any VMA, a write to read-only memory, exec of non-exec memory: INVALID, never FAILURE.
    void iommuReportDeviceFault(s.a, pageRequest(0x1000_0000, 2, { pasid }));
    void iommuReportDeviceFault(s.a, pageRequest(ro, 3, { pasid, perm: IOMMU_FAULT_PERM_WRITE }));
    void iommuReportDeviceFault(s.a, pageRequest(buf, 4, { pasid, perm: IOMMU_FAULT_PERM_EXEC }));
    await settle(s);
    expect(codes(s.responses)).toEqual([IOMMU_PAGE_RESP_SUCCESS, IOMMU_PAGE_RESP_INVALID, IOMMU_PAGE_RESP_INVALID, IOMMU_PAGE_RESP_INVALID]);
    expect(mm.translate(ro)).toBeNull();

    // The first failing request's verdict sticks: the request after it is not resolved.
    void iommuReportDeviceFault(s.a, pageRequest(0x2000_0000, 5, { pasid, partial: true }));
    void iommuReportDeviceFault(s.a, pageRequest(buf + 3 * PAGE_SIZE, 5, { pasid }));
    await settle(s);
    expect(s.responses.at(-1)!.msg).toEqual({ pasid, grpid: 5, code: IOMMU_PAGE_RESP_INVALID });
    expect(mm.translate(buf + 3 * PAGE_SIZE)).toBeNull();
    expect(s.responses).toHaveLength(5);
    expect(mm.users).toBe(1);
  });

  it('answers INVALID for a request without a PASID', () => {
    const fault = pageRequest(0x10000, 1);
    expect(iommuSvaHandleMm(fault, { users: 1 } as never)).toBe(IOMMU_PAGE_RESP_INVALID);
  });

  it('on mm exit calls the driver back, answers later requests INVALID, and frees the PASID after unbind', async () => {
    const s = await svaSetup();
    const proc = s.processes.spawn();
    const mm = proc.mm;
    const buf = mm.mmap(PAGE_SIZE, PROT_READ | PROT_WRITE);
    const exits: [string, number, unknown][] = [];
    const bond = await s.k.run(
      iommuSvaBindDevice(s.a, mm, {
        mmExit: (dev, pasid, drvdata) => {
          exits.push([dev.name, pasid, drvdata]);
        },
        drvdata: 'ctx-7',
      }),
    );
    const pasid = bond.pasid;
    await s.k.run(proc.exit());
    expect(exits).toEqual([[s.a.name, pasid, 'ctx-7']]);
    expect(bond.mmExited).toBe(true);
    expect(mm.state).toBe('exited');
    // The struct lives on (the SVA domain holds it), and with it the PASID.
    expect(s.k.iommu.globalPasids.has(pasid)).toBe(true);
    void iommuReportDeviceFault(s.a, pageRequest(buf, 9, { pasid, perm: IOMMU_FAULT_PERM_WRITE }));
    await settle(s);
    expect(s.responses.map((r) => r.msg)).toEqual([{ pasid, grpid: 9, code: IOMMU_PAGE_RESP_INVALID }]);
    await s.k.run(iommuSvaUnbindDevice(bond));
    expect(mm.state).toBe('freed');
    expect(s.k.iommu.globalPasids.has(pasid)).toBe(false);
    expect(exits).toHaveLength(1);
  });

  it('answers still-pending requests of the PASID at unbind', async () => {
    const s = await svaSetup();
    const proc = s.processes.spawn();
    const bond = await s.k.run(iommuSvaBindDevice(s.a, proc.mm));
    // A partial that never completes is dropped at unbind time only with its device; a completed
    // group queued right before unbind is handled (INVALID: outside the mm) before the detach returns.
    void iommuReportDeviceFault(s.a, pageRequest(0x5000_0000, 3, { pasid: bond.pasid }));
    await s.k.run(iommuSvaUnbindDevice(bond));
    expect(s.responses.map((r) => r.msg)).toEqual([{ pasid: bond.pasid, grpid: 3, code: IOMMU_PAGE_RESP_INVALID }]);
    expect(devFaultParam(s.a)!.pending.size).toBe(0);
    // After unbind nothing handles the PASID: INVALID at once.
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x5000_0000, 4, { pasid: bond.pasid }))).toBe('EINVAL');
  });
});
