import { describe, expect, it } from 'vitest';
import type { AtsCompletion, AtsRequest, DmaPort, DmaRequest, PageRequest } from '../../hw/dma.js';
import { Machine } from '../../hw/machine.js';
import {
  PCI_ATS_CTRL_ENABLE,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_PASID_CTRL_ENABLE,
  PCI_PASID_CTRL_EXEC,
  PCI_PRI_CTRL_ENABLE,
  PCI_PRI_CTRL_RESET,
  PCI_PRI_STATUS_PASID,
  PCI_PRI_STATUS_STOPPED,
  PCI_PRI_STATUS_UPRGI,
  PcieEndpoint,
} from '../../hw/pci/endpoint.js';
import { PcieRootComplex, ecamOffset } from '../../hw/pci/root-complex.js';

const ECAM = 0x4000_0000;
const RAM = 0x8000_0000;

function setup(eps: { bus?: number; device: number; fn?: number; ats?: boolean; pri?: boolean; pasidBits?: number }[] = []) {
  const m = new Machine({ seed: 11 });
  m.addRam(RAM, 0x100_0000);
  const rc = m.addPciHost(
    new PcieRootComplex({
      name: '/pcie@40000000',
      busStart: 0,
      busEnd: 1,
      iommuMap: [
        { ridBase: 0x0, iommu: '/iommu@2b400000', sidBase: 0x1000, length: 0x100 },
        { ridBase: 0x100, iommu: '/iommu@2b500000', sidBase: 0x0, length: 0x100 },
      ],
      iommuMapMask: 0xffff,
      atsSupported: true,
    }),
    { base: ECAM, size: 0x20_0000 },
  );
  const out = eps.map((e) =>
    m.addPcieEndpoint(rc, `/pcie@40000000/ep@${e.device},${e.fn ?? 0}`, {
      bus: e.bus ?? 0,
      device: e.device,
      fn: e.fn ?? 0,
      ats: e.ats,
      pri: e.pri,
      pasidBits: e.pasidBits,
    }),
  );
  const cfg = (bus: number, dev: number, fn: number, reg: number): number => ECAM + ecamOffset(bus, dev, fn, reg);
  return { m, rc, eps: out, cfg };
}

/** Walk an extended capability list the way the kernel's pci_find_ext_capability() does. */
function extCaps(read: (reg: number) => number): { id: number; pos: number; version: number }[] {
  const out: { id: number; pos: number; version: number }[] = [];
  let pos = 0x100;
  while (pos !== 0) {
    const h = read(pos);
    if (h === 0 || h === 0xffffffff) break;
    out.push({ id: h & 0xffff, pos, version: (h >>> 16) & 0xf });
    pos = (h >>> 20) & 0xffc;
  }
  return out;
}

describe('ECAM configuration space', () => {
  it('reads the type-0 header of an endpoint and all ones for absent functions', () => {
    const { m, cfg } = setup([{ device: 2 }, { bus: 1, device: 0, fn: 3 }]);
    const rd = (b: number, d: number, f: number, r: number): number => m.cpu.mmioRead32(cfg(b, d, f, r));
    expect(rd(0, 2, 0, 0x00)).toBe(0xff8013b5);
    expect(rd(0, 2, 0, 0x08) >>> 8).toBe(0x120000); // class code
    expect((rd(0, 2, 0, 0x04) >>> 16) & 0x10).toBe(0x10); // Status.CAP_LIST
    expect(rd(0, 2, 0, 0x34) & 0xff).toBe(0x40);
    expect(rd(0, 2, 0, 0x10)).toBe(0); // no BARs
    expect(rd(0, 3, 0, 0x00)).toBe(0xffffffff);
    expect(rd(0, 2, 1, 0x00)).toBe(0xffffffff);
    expect(rd(1, 0, 3, 0x00)).toBe(0xff8013b5);
    m.cpu.mmioWrite32(cfg(0, 5, 0, 0x04), 0xffff); // absent: ignored, no throw
  });

  it('has a PCI Express capability saying RC-integrated endpoint on bus 0, endpoint elsewhere', () => {
    const { m, cfg } = setup([{ device: 2 }, { bus: 1, device: 0 }]);
    const pcieType = (bus: number, dev: number): number => {
      let p = m.cpu.mmioRead32(cfg(bus, dev, 0, 0x34)) & 0xfc;
      while (p !== 0) {
        const h = m.cpu.mmioRead32(cfg(bus, dev, 0, p));
        if ((h & 0xff) === 0x10) return ((h >>> 16) >>> 4) & 0xf;
        p = (h >>> 8) & 0xfc;
      }
      return -1;
    };
    expect(pcieType(0, 2)).toBe(0x9);
    expect(pcieType(1, 0)).toBe(0x0);
  });

  it('chains ATS, PRI and PASID extended capabilities with their registers', () => {
    const { m, cfg } = setup([{ device: 1, ats: true, pri: true, pasidBits: 16 }, { device: 2 }]);
    const rd = (reg: number): number => m.cpu.mmioRead32(cfg(0, 1, 0, reg));
    const caps = extCaps(rd);
    expect(caps.map((c) => c.id)).toEqual([0x000f, 0x0013, 0x001b]);
    expect(caps.every((c) => c.version === 1)).toBe(true);
    const [ats, pri, pasid] = caps.map((c) => c.pos) as [number, number, number];
    // PASID capability: Max PASID Width 16, Exec and Privileged supported.
    expect(rd(pasid + 4) & 0xffff).toBe((16 << 8) | 0x6);
    // PRI: stopped while disabled, PASID required in responses, capacity 32.
    expect((rd(pri + 4) >>> 16) & (PCI_PRI_STATUS_STOPPED | PCI_PRI_STATUS_PASID)).toBe(PCI_PRI_STATUS_STOPPED | PCI_PRI_STATUS_PASID);
    expect(rd(pri + 8)).toBe(32);
    // An endpoint without the capabilities has an empty extended list.
    expect(extCaps((reg) => m.cpu.mmioRead32(cfg(0, 2, 0, reg)))).toEqual([]);

    // Enable bits are writable; read-only fields ignore writes.
    const wr = (reg: number, v: number): void => m.cpu.mmioWrite32(cfg(0, 1, 0, reg), v);
    wr(ats + 4, ((PCI_ATS_CTRL_ENABLE | 3) << 16) | 0xffff);
    expect(rd(ats + 4) >>> 16).toBe(PCI_ATS_CTRL_ENABLE | 3);
    expect(rd(ats + 4) & 0xffff).toBe(0x0060); // page aligned + global invalidate, unchanged
    wr(pasid + 4, ((PCI_PASID_CTRL_ENABLE | PCI_PASID_CTRL_EXEC) << 16) | 0xffff);
    expect(rd(pasid + 4)).toBe((((PCI_PASID_CTRL_ENABLE | PCI_PASID_CTRL_EXEC) << 16) | (16 << 8) | 0x6) >>> 0);
    wr(pri + 0xc, 8);
    wr(pri + 4, PCI_PRI_CTRL_ENABLE);
    expect(rd(pri + 4) & 0xffff).toBe(PCI_PRI_CTRL_ENABLE);
    expect((rd(pri + 4) >>> 16) & PCI_PRI_STATUS_STOPPED).toBe(0);
    expect(rd(pri + 0xc)).toBe(8);
    wr(pri + 8, 99);
    expect(rd(pri + 8)).toBe(32);
    const ep = m.endpoint('/pcie@40000000/ep@1,0')!;
    expect([ep.atsEnabled, ep.priEnabled, ep.pasidEnabled]).toEqual([true, true, true]);
  });

  it('marks functions of one device multi-function', () => {
    const { m, cfg } = setup([{ device: 4, fn: 0 }, { device: 4, fn: 1 }, { device: 5 }]);
    expect((m.cpu.mmioRead32(cfg(0, 4, 0, 0x0c)) >>> 16) & 0x80).toBe(0x80);
    expect((m.cpu.mmioRead32(cfg(0, 5, 0, 0x0c)) >>> 16) & 0x80).toBe(0);
  });

  it('resets the function on a Function Level Reset', () => {
    const { m, cfg, eps } = setup([{ device: 1, ats: true }]);
    const ep = eps[0];
    const { exp, ats } = ep.capabilityOffsets;
    m.cpu.mmioWrite32(cfg(0, 1, 0, 0x04), PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
    m.cpu.mmioWrite32(cfg(0, 1, 0, ats + 4), PCI_ATS_CTRL_ENABLE << 16);
    expect(ep.busMasterEnabled && ep.atsEnabled).toBe(true);
    m.cpu.mmioWrite32(cfg(0, 1, 0, exp + 8), 0x8000); // Device Control.BCR_FLR
    expect(ep.busMasterEnabled).toBe(false);
    expect(ep.atsEnabled).toBe(false);
    expect(m.cpu.mmioRead32(cfg(0, 1, 0, exp + 8)) & 0x8000).toBe(0);
  });
});

describe('RID to stream ID', () => {
  it('maps RIDs through iommu-map and iommu-map-mask, and leaves others unmapped', () => {
    const { rc } = setup();
    expect(rc.streamFor(0x0008)).toEqual({ iommu: '/iommu@2b400000', streamId: 0x1008 });
    expect(rc.streamFor(0x0100)).toEqual({ iommu: '/iommu@2b500000', streamId: 0x0 });
    expect(rc.streamFor(0x01ff)).toEqual({ iommu: '/iommu@2b500000', streamId: 0xff });
    expect(rc.streamFor(0x0200)).toEqual({ iommu: null, streamId: 0x200 });
    const masked = new PcieRootComplex({
      name: '/p',
      busStart: 0,
      busEnd: 255,
      iommuMap: [{ ridBase: 0, iommu: '/smmu', sidBase: 0, length: 1 }],
      iommuMapMask: 0,
      atsSupported: false,
    });
    expect(masked.streamFor(0xabcd)).toEqual({ iommu: '/smmu', streamId: 0 });
    const none = new PcieRootComplex({ name: '/q', busStart: 0, busEnd: 0, iommuMap: [], iommuMapMask: 0xffff, atsSupported: false });
    expect(none.streamFor(0x18)).toEqual({ iommu: null, streamId: 0x18 });
  });

  it('gives endpoints requester ID bus<<8|dev<<3|fn and the mapped stream ID', () => {
    const { eps } = setup([{ bus: 1, device: 3, fn: 2 }]);
    const ep = eps[0];
    expect(ep.rid).toBe(0x11a);
    expect(ep.streamIds).toEqual([0x1a]); // 0x11a - 0x100 on the second IOMMU
    expect(ep.streams[0].iommu).toBeNull(); // no model for that IOMMU: straight to memory
  });
});

/** A translating port: IOVA = PA - offset, with per-page permissions and a page-in hook. */
class FakeAts implements DmaPort {
  readonly submitted: DmaRequest[] = [];
  readonly translations: AtsRequest[] = [];
  readonly pageRequests: PageRequest[] = [];
  readonly writable = new Set<number>();
  constructor(
    private readonly m: Machine,
    private readonly offset: number,
  ) {}
  submit(req: DmaRequest, done: (c: import('../../hw/dma.js').DmaCompletion) => void): void {
    this.submitted.push(req);
    done(this.m.interconnect.access(req.translated ? req : { ...req, addr: req.addr + this.offset }));
  }
  translate(req: AtsRequest, done: (c: AtsCompletion) => void): void {
    this.translations.push(req);
    // Answer in a later step, as a real translation agent would.
    this.m.scheduler.schedule(10, () =>
      done({ status: 'ok', pa: req.addr + this.offset, size: 4096, read: true, write: this.writable.has(req.addr) }),
    );
  }
  pageRequest(req: PageRequest): void {
    this.pageRequests.push(req);
  }
}

function enable(m: Machine, ep: PcieEndpoint, cfg: (b: number, d: number, f: number, r: number) => number): void {
  const { ats, pri, pasid } = ep.capabilityOffsets;
  const w = (reg: number, v: number): void => m.cpu.mmioWrite32(cfg(ep.bus, ep.device, ep.fn, reg), v);
  w(0x04, PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
  if (ats) w(ats + 4, PCI_ATS_CTRL_ENABLE << 16);
  if (pasid) w(pasid + 4, PCI_PASID_CTRL_ENABLE << 16);
  if (pri) {
    w(pri + 0xc, 4);
    w(pri + 4, PCI_PRI_CTRL_ENABLE);
  }
}

describe('endpoint transactions', () => {
  it('issues nothing while Bus Master Enable is clear', async () => {
    const { m, eps, cfg } = setup([{ device: 1 }]);
    const ep = eps[0];
    const c = await ep.write(RAM, Uint8Array.of(1));
    expect(c.status).toBe('not-issued');
    expect(c.detail).toMatch(/Bus Master Enable/);
    expect(m.memory.read8(RAM)).toBe(0);
    m.cpu.mmioWrite32(cfg(0, 1, 0, 0x04), PCI_COMMAND_MASTER);
    expect((await ep.write(RAM, Uint8Array.of(1))).status).toBe('ok');
    expect(m.memory.read8(RAM)).toBe(1);
  });

  it('needs PASID Enable to send an SSID, and a PASID prefix for exec/privileged', async () => {
    const { m, eps, cfg } = setup([{ device: 1, pasidBits: 8 }]);
    const ep = eps[0];
    m.cpu.mmioWrite32(cfg(0, 1, 0, 0x04), PCI_COMMAND_MASTER);
    expect((await ep.read(RAM, 4, { ssid: 1 })).detail).toMatch(/PASID Enable is clear/);
    expect((await ep.read(RAM, 4, { priv: true })).detail).toMatch(/PASID prefix/);
    m.cpu.mmioWrite32(cfg(0, 1, 0, ep.capabilityOffsets.pasid + 4), PCI_PASID_CTRL_ENABLE << 16);
    expect((await ep.read(RAM, 4, { ssid: 1 })).status).toBe('ok');
    expect((await ep.read(RAM, 4, { ssid: 1, exec: true })).detail).toMatch(/Execute Permission Enable/);
    expect(() => ep.submitRead(RAM, 4, { ssid: 256 }, () => {})).toThrow(RangeError);
  });

  it('a malformed translation completion aborts the access, naming what is wrong, and caches nothing', async () => {
    const { m, eps, cfg } = setup([{ device: 1, ats: true, pasidBits: 8 }]);
    const ep = eps[0];
    const answers: AtsCompletion[] = [
      { status: 'ok', pa: RAM + 0x3000, size: 12288, read: true, write: true },
      { status: 'ok', pa: RAM + 0x1000, size: 8192, read: true, write: true },
      { status: 'ok', size: 4096, read: true, write: true },
      { status: 'ok', pa: RAM + 2 ** 33, size: 2 ** 33 + 4096, read: true, write: true },
    ];
    const port: DmaPort = {
      submit: (req, done) => done(m.interconnect.access(req)),
      translate: (_req, done) => {
        const c = answers.shift()!;
        m.scheduler.schedule(10, () => done(c));
      },
    };
    ep.setRoute(ep.streamIds[0], port, '/iommu');
    enable(m, ep, cfg);
    const details: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await m.scheduler.runUntilSettled(ep.write(0x2010, Uint8Array.of(1), { ssid: 5 }));
      expect(c.status).toBe('abort');
      details.push(c.detail);
    }
    expect(details).toEqual([
      'ATS translation completion with size 12288, not a power of two >= 4 KiB',
      `ATS translation completion address 0x${(RAM + 0x1000).toString(16)} is not aligned to its size 0x2000`,
      'ATS translation completion without a valid address',
      `ATS translation completion with size ${2 ** 33 + 4096}, not a power of two >= 4 KiB`,
    ]);
    expect(ep.atcContents).toEqual([]);
    expect(m.memory.read8(RAM + 0x2010)).toBe(0);
  });

  it('with ATS enabled: translates once, caches in the ATC, and issues translated requests', async () => {
    const { m, eps, cfg } = setup([{ device: 1, ats: true, pasidBits: 8 }]);
    const ep = eps[0];
    const port = new FakeAts(m, RAM);
    ep.setRoute(ep.streamIds[0], port, '/iommu');
    enable(m, ep, cfg);
    port.writable.add(0x2000);
    const w = ep.write(0x2010, Uint8Array.of(0xaa, 0xbb), { ssid: 5 });
    const c = await m.scheduler.runUntilSettled(w);
    expect(c).toEqual({ status: 'ok', pa: RAM + 0x2010 });
    expect(m.memory.read16(RAM + 0x2010)).toBe(0xbbaa);
    expect(port.translations).toEqual([{ master: ep.name, streamId: ep.streamIds[0], ssid: 5, ssidValid: true, addr: 0x2000, write: true, exec: false, priv: false }]);
    expect(port.submitted[0]).toMatchObject({ translated: true, addr: RAM + 0x2010, len: 2 });
    // Second access: ATC hit, no new translation request, completes synchronously.
    let sync = false;
    ep.submitRead(0x2010, 2, { ssid: 5 }, (r) => {
      sync = r.status === 'ok' && r.data![0] === 0xaa;
    });
    expect(sync).toBe(true);
    expect(port.translations).toHaveLength(1);
    expect(ep.atsStats.hits).toBe(1);
    // Another PASID is another address space: a miss.
    await m.scheduler.runUntilSettled(ep.read(0x2010, 2, { ssid: 6 }));
    expect(port.translations).toHaveLength(2);

    // An ATC invalidation drops the entry and completes after a delay.
    let invDone = false;
    ep.invalidateAtc({ ssid: 5, global: false, addr: 0x2000, size: 0x1000 }, () => {
      invDone = true;
    });
    expect(ep.atcContents.some((e) => e.ssid === 5)).toBe(false);
    expect(ep.atcContents.some((e) => e.ssid === 6)).toBe(true);
    expect(invDone).toBe(false);
    m.scheduler.runSyncUntilIdle();
    expect(invDone).toBe(true);
  });

  it('splits an access across ATC entries', async () => {
    const { m, eps, cfg } = setup([{ device: 1, ats: true }]);
    const ep = eps[0];
    const port = new FakeAts(m, RAM);
    ep.setRoute(ep.streamIds[0], port, '/iommu');
    enable(m, ep, cfg);
    port.writable.add(0x1000).add(0x2000);
    const c = await m.scheduler.runUntilSettled(ep.write(0x1ffe, Uint8Array.of(1, 2, 3, 4)));
    expect(c.status).toBe('ok');
    expect(Array.from(m.memory.read(RAM + 0x1ffe, 4))).toEqual([1, 2, 3, 4]);
    expect(port.submitted.map((r) => [r.addr - RAM, r.len])).toEqual([
      [0x1ffe, 2],
      [0x2000, 2],
    ]);
  });

  it('with PRI: a translation without write access sends a page request, and the response lets it retry', async () => {
    const { m, eps, cfg } = setup([{ device: 1, ats: true, pri: true, pasidBits: 8 }]);
    const ep = eps[0];
    const port = new FakeAts(m, RAM);
    ep.setRoute(ep.streamIds[0], port, '/iommu');
    enable(m, ep, cfg);
    const w = ep.write(0x5000, Uint8Array.of(7), { ssid: 2 });
    await m.scheduler.runUntilIdle();
    expect(port.pageRequests).toHaveLength(1);
    const pr = port.pageRequests[0];
    expect(pr).toMatchObject({ addr: 0x5000, write: true, read: false, ssid: 2, ssidValid: true, last: true });
    expect(ep.outstandingPageRequests).toBe(1);
    // The host "pages it in", then answers the group.
    port.writable.add(0x5000);
    ep.pageResponse({ prgIndex: pr.prgIndex, ssid: 2, ssidValid: true, code: 'success' });
    const c = await m.scheduler.runUntilSettled(w);
    expect(c.status).toBe('ok');
    expect(m.memory.read8(RAM + 0x5000)).toBe(7);
    expect(ep.outstandingPageRequests).toBe(0);

    // A failed response faults the access; an unexpected PRG index sets UPRGI.
    const w2 = ep.write(0x6000, Uint8Array.of(1), { ssid: 2 });
    await m.scheduler.runUntilIdle();
    ep.pageResponse({ prgIndex: port.pageRequests[1].prgIndex, ssid: 2, ssidValid: true, code: 'invalid' });
    const c2 = await m.scheduler.runUntilSettled(w2);
    expect(c2.status).toBe('fault');
    expect(m.memory.read8(RAM + 0x6000)).toBe(0);
    ep.pageResponse({ prgIndex: 77, ssid: 2, ssidValid: true, code: 'success' });
    const pri = ep.capabilityOffsets.pri;
    expect((m.cpu.mmioRead32(cfg(0, 1, 0, pri + 4)) >>> 16) & PCI_PRI_STATUS_UPRGI).toBe(PCI_PRI_STATUS_UPRGI);
    // RW1C clears it.
    m.cpu.mmioWrite32(cfg(0, 1, 0, pri + 4), (PCI_PRI_STATUS_UPRGI << 16) | PCI_PRI_CTRL_ENABLE);
    expect((m.cpu.mmioRead32(cfg(0, 1, 0, pri + 4)) >>> 16) & PCI_PRI_STATUS_UPRGI).toBe(0);
  });

  it('PRI reset abandons outstanding page requests; without PRI a denied translation faults', async () => {
    const { m, eps, cfg } = setup([{ device: 1, ats: true, pri: true }, { device: 2, ats: true }]);
    const [ep, noPri] = eps as [PcieEndpoint, PcieEndpoint];
    const port = new FakeAts(m, RAM);
    ep.setRoute(ep.streamIds[0], port, '/iommu');
    noPri.setRoute(noPri.streamIds[0], port, '/iommu');
    enable(m, ep, cfg);
    enable(m, noPri, cfg);
    const w = ep.write(0x7000, Uint8Array.of(1));
    await m.scheduler.runUntilIdle();
    expect(ep.outstandingPageRequests).toBe(1);
    const pri = ep.capabilityOffsets.pri;
    m.cpu.mmioWrite32(cfg(0, 1, 0, pri + 4), 0); // disable
    m.cpu.mmioWrite32(cfg(0, 1, 0, pri + 4), PCI_PRI_CTRL_RESET);
    expect((await m.scheduler.runUntilSettled(w)).status).toBe('fault');
    expect((m.cpu.mmioRead32(cfg(0, 1, 0, pri + 4)) >>> 16) & PCI_PRI_STATUS_STOPPED).toBe(PCI_PRI_STATUS_STOPPED);

    const c = await m.scheduler.runUntilSettled(noPri.write(0x8000, Uint8Array.of(1)));
    expect(c.status).toBe('fault');
    expect(c.detail).toMatch(/grants no write access/);
  });

  it('an ATS request with no translation agent upstream is an Unsupported Request', async () => {
    const { m, eps, cfg } = setup([{ device: 1, ats: true }]);
    const ep = eps[0];
    enable(m, ep, cfg); // its IOMMU has no model: the port is the interconnect
    const c = await m.scheduler.runUntilSettled(ep.read(RAM, 4));
    expect(c.status).toBe('bus-error');
    expect(c.detail).toMatch(/Unsupported Request/);
  });
});
