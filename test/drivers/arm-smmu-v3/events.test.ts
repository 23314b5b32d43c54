/**
 * Event and PRI records: decoding into readable reports, PRI page requests end to end (IOPF enabled:
 * the request reaches the domain's fault handler, which maps the page, and CMD_PRI_RESP lets the
 * endpoint retry; a PRI queue overflow reported and acknowledged; without IOPF: "unexpected PRI
 * request" and a denial), a bad STE reported as C_BAD_STE, and what a domain fault handler's result
 * does to a stalled transaction (only EAGAIN gets CMD_RESUME retry).
 */
import { describe, expect, it } from 'vitest';
import { pciEnablePri } from '../../../bus/pci/ats.js';
import { pciSetMaster } from '../../../bus/pci/command.js';
import type { PciDevice } from '../../../bus/pci/pci-device.js';
import { iommuSetFaultHandler } from '../../../core/iommu-domain.js';
import { iommuMap } from '../../../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../../core/io-pgtable.js';
import { iommuDevEnableFeature } from '../../../core/iommu.js';
import { armSmmuV3MasterOf } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { PROT_READ, PROT_WRITE } from '../../../mm/prot.js';
import { armSmmuDecodeEvent, armSmmuDescribeEvent } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-events.js';
import {
  ARM_SMMU_PRIQ_CONS,
  ARM_SMMU_PRIQ_PROD,
  CMDQ_OP_CFGI_STE,
  EVT_ID_BAD_STE_CONFIG,
  EVT_ID_TRANSLATION_FAULT,
  EVTQ_0_ID,
  EVTQ_0_SID,
  EVTQ_0_SSID,
  EVTQ_0_SSV,
  EVTQ_1_CLASS,
  EVTQ_1_RnW,
  EVTQ_1_S2,
  EVTQ_1_STAG,
  EVTQ_1_STALL,
  EVTQ_2_ADDR_HI,
  EVTQ_2_ADDR_LO,
  EVTQ_3_IPA,
  Q_OVERFLOW_FLAG,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { allocPages, bootSmmuV3, deviceOf, engineJob, fillPhys, mapRange, ownDomain, readPhys, runIn, settle, V3 } from '../../../scenarios/smmu-v3-lab.js';
import { accel, bindNewProcess, PAGE } from '../../../scenarios/sva-lab.js';

const ACCEL_NODE = '/pcie@3f000000/accel@1,0';

describe('decoding', () => {
  it('a stalled stage 2 translation fault with an IPA', () => {
    const w = new Uint32Array(8);
    EVTQ_0_ID.prep(w, EVT_ID_TRANSLATION_FAULT);
    EVTQ_0_SID.prep(w, 0x1234);
    EVTQ_0_SSV.prep(w, 1);
    EVTQ_0_SSID.prep(w, 9);
    EVTQ_1_STAG.prep(w, 0x2a);
    EVTQ_1_STALL.prep(w, 1);
    EVTQ_1_RnW.prep(w, 1);
    EVTQ_1_S2.prep(w, 1);
    EVTQ_1_CLASS.prep(w, 2);
    EVTQ_2_ADDR_LO.prep(w, 0x8765_4000);
    EVTQ_2_ADDR_HI.prep(w, 0x12);
    EVTQ_3_IPA.prep(w, 0x9_8000_0000);
    const r = armSmmuDecodeEvent(w, 0, '/dev');
    expect(r).toMatchObject({ name: 'F_TRANSLATION', sid: 0x1234, ssid: 9, stall: true, stag: 0x2a, read: true, s2: true, cls: 'IN', addr: 0x12_8765_4000, ipa: 0x9_8000_0000 });
    expect(armSmmuDescribeEvent(r)).toBe(
      'F_TRANSLATION, SID 0x1234, SSID 0x9, unprivileged read at 0x1287654000, stage 2, class IN, IPA 0x980000000, stalled, STAG 0x2a, master /dev',
    );
    expect(r.raw).toHaveLength(4);
    expect(r.raw[0]).toBe(`0x${w[1].toString(16).padStart(8, '0')}${w[0].toString(16).padStart(8, '0')}`);
    // The record was copied when decoded: reusing the buffer for the next record changes nothing.
    const again = armSmmuDecodeEvent(w, 0, '/dev');
    w.fill(0);
    expect(again.raw).toEqual(r.raw);
    // As a plain object (JSON output): every field, the hex qwords included.
    const json = JSON.parse(JSON.stringify(r)) as Record<string, unknown>;
    expect(Object.keys(json)[0]).toBe('time');
    expect(json.raw).toEqual(r.raw);
    expect(json).toMatchObject({ name: 'F_TRANSLATION', sid: 0x1234, master: '/dev', outcome: '' });
  });
});

describe('records from the hardware', () => {
  it('a broken STE: C_BAD_STE, dumped with its StreamID', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    // Clear the STE of the engine behind the driver's back, and make the SMMU forget its copy.
    const pa = lab.smmu.strtab.stePa(0x101);
    lab.machine.cpu.ram.fill(pa, 64, 0);
    await runIn(lab, lab.smmu.cmdq.issueCmdWithSync({ opcode: CMDQ_OP_CFGI_STE, cfgi: { sid: 0x101, ssid: 0, leaf: true } }));
    const r = await runIn(lab, lab.machine.master(V3.engine)!.read(0x1000, 8));
    await settle(lab);
    expect(r.status).not.toBe('ok');
    expect(lab.smmu.events.map((e) => [e.id, e.name, e.sid, e.outcome])).toEqual([[EVT_ID_BAD_STE_CONFIG, 'C_BAD_STE', 0x101, 'dumped (bad STE)']]);
    expect(lab.kernel.log.lines().some((l) => l.message.startsWith('event 0x04 received: C_BAD_STE, SID 0x101'))).toBe(true);
  });
});

describe('PRI page requests', () => {
  it('with IOPF enabled: the request reaches the fault handler, which maps the page; PRI_RESP success; the endpoint retries', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const pdev = deviceOf(lab, V3.accel) as PciDevice;
    const ep = lab.machine.endpoint(ACCEL_NODE)!;
    pciSetMaster(pdev);
    const domain = await ownDomain(lab, V3.accel);
    const pa = allocPages(lab, 4096);
    fillPhys(lab, pa, 4096, 0xa7);
    const asked: number[] = [];
    iommuSetFaultHandler(domain, async (d, _dev, iova) => {
      asked.push(iova);
      await iommuMap(d, iova, pa, 4096, IOMMU_READ | IOMMU_WRITE);
      return 'EAGAIN' as const;
    });
    await runIn(lab, iommuDevEnableFeature(pdev, 'IOPF'));
    expect(pdev.features.priEnabled).toBe(true);
    expect(armSmmuV3MasterOf(pdev)!.iopfEnabled).toBe(true);

    const r = await runIn(lab, ep.read(0x6000_0100, 32), 'read an unmapped page');
    await settle(lab);
    expect(r.status).toBe('ok');
    expect([...(r.data ?? [])].every((b) => b === 0xa7)).toBe(true);
    expect(asked).toEqual([0x6000_0000]);
    const req = lab.smmu.events.find((e) => e.kind === 'page-request')!;
    expect(req).toMatchObject({ sid: 0x08, addr: 0x6000_0000, read: true, last: true, outcome: 'reported to the fault handler' });
    // Every field as a plain object (what JSON output shows), the entry's two qwords included.
    expect(JSON.parse(JSON.stringify(req))).toEqual({
      time: req.time,
      kind: 'page-request',
      id: 0,
      name: 'PAGE_REQUEST',
      sid: 0x08,
      ssid: null,
      addr: 0x6000_0000,
      read: true,
      write: false,
      exec: false,
      priv: false,
      stall: false,
      stag: 0,
      s2: false,
      cls: null,
      ipa: null,
      fetchAddr: null,
      prgIndex: req.prgIndex,
      last: true,
      master: req.master,
      outcome: 'reported to the fault handler',
      raw: [...req.raw],
    });
    expect(req.raw).toHaveLength(2);
    expect(req.master).toBe(pdev.name);
    expect(lab.smmu.eventStats.priResponses).toBe(1);
    expect(ep.outstandingPageRequests).toBe(0);
  });

  it('the decoded-record log keeps the newest 4096 records at least, dropping the oldest in batches (never more than 4352)', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const { pdev, ep } = accel(lab);
    const { mm, bond } = await bindNewProcess(lab, pdev);
    const byte = Uint8Array.of(0x5a);
    let lengths: number[] = [];
    let buf = 0;
    // 140 rounds of 32 page requests (4480 records), each round into fresh pages.
    for (let round = 0; round < 140; round++) {
      if (round > 0) await runIn(lab, mm.munmap(buf, 32 * PAGE), 'munmap');
      buf = mm.mmap(32 * PAGE, PROT_READ | PROT_WRITE);
      const writes = Array.from({ length: 32 }, (_, i) => ep.write(buf + i * PAGE, byte, { ssid: bond.pasid }));
      const done = await runIn(lab, Promise.all(writes), 'faulting writes');
      expect(done.every((d) => d.status === 'ok')).toBe(true);
      lengths.push(lab.smmu.events.length);
    }
    lengths = lengths.filter((n) => n >= 4096);
    expect(lengths.length).toBeGreaterThan(0);
    expect(Math.max(...lengths)).toBeLessThanOrEqual(4096 + 256);
    const log = lab.smmu.events;
    // 4480 records: the 4353rd dropped the oldest 257 (back to 4096), 127 came after.
    expect(log.length).toBe(4480 - 257);
    expect(log.every((r) => r.kind === 'page-request')).toBe(true);
    // Newest last: the last round's pages end the log.
    expect(log.slice(-32).map((r) => r.addr).sort((x, y) => x - y)).toEqual(Array.from({ length: 32 }, (_, i) => buf + i * PAGE));
    expect(lab.smmu.eventStats.byName.PAGE_REQUEST).toBe(140 * 32);
  });

  it('PRI queue overflow: requests are lost, the thread says so and acknowledges OVFLG, and what reached the queue is served', async () => {
    // A 2-entry PRI queue (IDR1.PRIQS = 1) and more page requests at once than it holds.
    const lab = await bootSmmuV3({ seed: 1, smmu: { priqLog2: 1 } });
    expect(lab.smmu.priq!.entries).toBe(2);
    const pdev = deviceOf(lab, V3.accel) as PciDevice;
    const ep = lab.machine.endpoint(ACCEL_NODE)!;
    pciSetMaster(pdev);
    const domain = await ownDomain(lab, V3.accel);
    const PAGES = 8;
    const pa = allocPages(lab, PAGES * 4096);
    for (let i = 0; i < PAGES; i++) fillPhys(lab, pa + i * 4096, 4096, 0x10 + i);
    const base = 0x6000_0000;
    const handled: number[] = [];
    iommuSetFaultHandler(domain, async (d, _dev, iova) => {
      handled.push((iova - base) / 4096);
      await iommuMap(d, iova, pa + (iova - base), 4096, IOMMU_READ | IOMMU_WRITE);
      return 'EAGAIN' as const;
    });
    await runIn(lab, iommuDevEnableFeature(pdev, 'IOPF'));
    const reads = await runIn(lab, Promise.all(Array.from({ length: PAGES }, (_, i) => ep.read(base + i * 4096, 16))), 'a burst of page faults');
    await settle(lab);
    // What reached the PRI queue was handled and its read completed with the page's bytes; what the
    // SMMU dropped got its automatic Success, the endpoint's retry found no mapping, and it failed.
    const lost = lab.model.priq.stats.overflowed;
    expect(lost).toBeGreaterThan(0);
    expect(handled.length).toBe(PAGES - lost);
    expect(reads.map((r, i) => (handled.includes(i) ? r.status === 'ok' && r.data![0] === 0x10 + i : r.status === 'fault'))).toEqual(Array(PAGES).fill(true));
    expect(lab.model.priq.stats.autoResponses).toBe(lost);
    expect(lab.smmu.eventStats.priqOverflows).toBeGreaterThanOrEqual(1);
    expect(lab.kernel.log.lines('err').some((l) => l.message === 'PRIQ overflow detected -- requests lost')).toBe(true);
    const prod = lab.model.peek32(ARM_SMMU_PRIQ_PROD);
    const cons = lab.model.peek32(ARM_SMMU_PRIQ_CONS);
    expect((prod & Q_OVERFLOW_FLAG) !== 0).toBe(true);
    expect(cons & Q_OVERFLOW_FLAG).toBe(prod & Q_OVERFLOW_FLAG);
    expect(ep.outstandingPageRequests).toBe(0);
  });

  it('without IOPF: "unexpected PRI request", denied, and the endpoint gives up', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const pdev = deviceOf(lab, V3.accel) as PciDevice;
    const ep = lab.machine.endpoint(ACCEL_NODE)!;
    pciSetMaster(pdev);
    await ownDomain(lab, V3.accel);
    // PRI turned on in the function behind the driver's back.
    pciEnablePri(pdev, 4);
    const r = await runIn(lab, ep.read(0x6000_0000, 32), 'read an unmapped page');
    await settle(lab);
    expect(r.status).not.toBe('ok');
    expect(r.detail).toMatch(/page request .*invalid/);
    expect(lab.kernel.log.lines().some((l) => l.message.startsWith('unexpected PRI request received: PAGE_REQUEST, SID 0x8'))).toBe(true);
    expect(lab.smmu.events.find((e) => e.kind === 'page-request')?.outcome).toBe('denied');
    expect(ep.outstandingPageRequests).toBe(0);
  });
});

describe('stalled transactions and the domain fault handler', () => {
  const SRC = 0x1000_0000;
  const DST = 0x2000_0000;

  it('only EAGAIN gets CMD_RESUME retry; 0 ("handled"), an errno, or no handler get RESUME abort; one handler call per stall', async () => {
    const outcome: Record<string, unknown> = {};
    for (const ret of ['EAGAIN', 0, 'EFAULT', null] as const) {
      const lab = await bootSmmuV3({ seed: 1 });
      const domain = await ownDomain(lab, V3.stallEngine);
      const src = allocPages(lab, 4096);
      const dst = allocPages(lab, 4096);
      fillPhys(lab, src, 4096, 0x3c);
      await mapRange(lab, domain, SRC, src, 4096);
      const calls: number[] = [];
      if (ret !== null) {
        iommuSetFaultHandler(domain, async (d, _dev, iova) => {
          calls.push(iova);
          // Every handler maps the page: only its result decides whether the write is replayed.
          await iommuMap(d, iova - (iova % 4096), dst, 4096, IOMMU_READ | IOMMU_WRITE);
          return ret;
        });
      }
      const st = await engineJob(lab, V3.stallEngine, { op: 'copy', src: SRC, dst: DST, len: 4096 });
      await settle(lab);
      outcome[String(ret ?? 'no handler')] = {
        job: [st.state, st.dmaStatus],
        calls: calls.length,
        stalls: lab.model.stats.stalled,
        resume: [lab.smmu.eventStats.resumeRetry, lab.smmu.eventStats.resumeAbort],
        landed: readPhys(lab, dst, 4096).every((b) => b === 0x3c),
        stillStalled: lab.model.stalls.count,
        logged: lab.smmu.events.filter((e) => e.stall).map((e) => e.outcome),
      };
    }
    const reported = ['stall reported to the fault handler'];
    expect(outcome).toEqual({
      EAGAIN: { job: ['done', 'ok'], calls: 1, stalls: 1, resume: [1, 0], landed: true, stillStalled: 0, logged: reported },
      '0': { job: ['error', 'abort'], calls: 1, stalls: 1, resume: [0, 1], landed: false, stillStalled: 0, logged: reported },
      EFAULT: { job: ['error', 'abort'], calls: 1, stalls: 1, resume: [0, 1], landed: false, stillStalled: 0, logged: reported },
      'no handler': { job: ['error', 'abort'], calls: 0, stalls: 1, resume: [0, 1], landed: false, stillStalled: 0, logged: ['stall aborted: no handler'] },
    });
  });

  it('a report-only handler (the debugfs use of the 2017 thread) does not livelock the master: few events, one call', async () => {
    const lab = await bootSmmuV3({ seed: 2 });
    const domain = await ownDomain(lab, V3.stallEngine);
    let calls = 0;
    iommuSetFaultHandler(domain, () => {
      calls++;
      return 0;
    });
    const st = await engineJob(lab, V3.stallEngine, { op: 'fill', dst: DST, len: 4096, byte: 1 });
    await settle(lab, 1_000_000);
    expect([st.state, st.dmaStatus]).toEqual(['error', 'abort']);
    expect(calls).toBe(1);
    expect(lab.smmu.events.filter((e) => e.stall)).toHaveLength(1);
    expect(lab.smmu.eventStats.resumeRetry).toBe(0);
  });
});
