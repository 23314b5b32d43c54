import { describe, expect, it } from 'vitest';
import type { DmaCompletion, DmaPort, DmaRequest } from '../../hw/dma.js';
import { V2M_MSI_SETSPI_NS } from '../../hw/gic.js';
import { Machine } from '../../hw/machine.js';

const RAM = 0x8000_0000;

function machine(): Machine {
  const m = new Machine({ seed: 5, irqLatencyNs: 20 });
  m.addRam(RAM, 0x10_0000);
  return m;
}

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);

describe('interconnect and direct DMA', () => {
  it('a master with no IOMMU writes into RAM and reads it back', async () => {
    const m = machine();
    const dma = m.addPlatformMaster('/soc/dma@1000', [{ streamId: 3, iommu: null }]);
    const w = await dma.write(RAM + 0x1ffe, bytes(1, 2, 3, 4, 5)); // crosses a frame boundary
    expect(w).toEqual({ status: 'ok', pa: RAM + 0x1ffe });
    expect(Array.from(m.memory.read(RAM + 0x1ffe, 5))).toEqual([1, 2, 3, 4, 5]);
    const r = await dma.read(RAM + 0x1fff, 3);
    expect(r.status).toBe('ok');
    expect(Array.from(r.data!)).toEqual([2, 3, 4]);
    expect(dma.stats).toMatchObject({ issued: 2, ok: 2, failed: 0, outstanding: 0 });
  });

  it('reports a bus error on unbacked memory to the master, without throwing', async () => {
    const m = machine();
    const dma = m.addPlatformMaster('/soc/dma@1000', [{ streamId: 3, iommu: null }]);
    const w = await dma.write(0x1000, bytes(9, 9));
    expect(w.status).toBe('bus-error');
    expect(w.detail).toMatch(/PA 0x1000 hits no memory or device/);
    // Straddling the end of RAM is a bus error too, and nothing is written.
    const end = RAM + 0x10_0000;
    const s = await dma.write(end - 2, bytes(7, 7, 7, 7));
    expect(s.status).toBe('bus-error');
    expect(Array.from(m.memory.read(end - 2, 2))).toEqual([0, 0]);
    const r = await dma.read(0xdead_0000, 16);
    expect(r.status).toBe('bus-error');
    expect(r.data).toBeUndefined();
    expect(dma.stats).toMatchObject({ issued: 3, ok: 0, failed: 3 });
    expect(dma.stats.failedBy['bus-error']).toBe(3);
  });

  it('completes synchronously through the callback form when nothing stalls', () => {
    const m = machine();
    const dma = m.addPlatformMaster('/soc/dma@1000', [{ streamId: 3, iommu: null }]);
    let got: DmaCompletion | null = null;
    dma.submitWrite(RAM, bytes(0xaa), {}, (c) => {
      got = c;
    });
    expect(got).toEqual({ status: 'ok', pa: RAM });
  });

  it('shows every write that lands in RAM to the observers, and only those', async () => {
    const m = machine();
    const seen: [string, number, number, number][] = [];
    const stop = m.interconnect.onRamWrite((master, pa, len, time) => seen.push([master, pa, len, time]));
    const dma = m.addPlatformMaster('/soc/dma@1000', [{ streamId: 3, iommu: null }]);
    await dma.write(RAM + 0x40, new Uint8Array(64));
    await dma.read(RAM + 0x40, 64);
    await dma.write(0x10, bytes(1)); // bus error: not shown
    stop();
    await dma.write(RAM, bytes(1));
    expect(seen).toEqual([['/soc/dma@1000', RAM + 0x40, 64, 0]]);
  });

  it('posts a 32-bit write to aligned RAM with the observers and monitors a submitted write gets, and declines anything else', () => {
    const m = machine();
    const gic = m.addGic('/intc', 2, 'arm,gic-400');
    m.addV2mFrame('/intc/v2m@0', 0x2c1c_0000, 0x1_0000, gic, 224, 32);
    const ic = m.interconnect;
    const seen: string[] = [];
    ic.onRamWillWrite((master, pa, len) => seen.push(`before ${master} ${pa.toString(16)}+${len} was ${m.memory.read32(pa).toString(16)}`));
    ic.onRamWrite((master, pa, len) => seen.push(`after ${master} ${pa.toString(16)}+${len} is ${m.memory.read32(pa).toString(16)}`));
    const woken: number[] = [];
    m.cpu.monitor!(RAM + 0x40, (pa) => woken.push(pa));
    m.memory.write32(RAM + 0x40, 0x1234);
    expect(ic.postRam32('smmu', RAM + 0x40, 0)?.status).toBe('ok');
    expect(m.memory.read32(RAM + 0x40)).toBe(0);
    expect(seen).toEqual([`before smmu ${(RAM + 0x40).toString(16)}+4 was 1234`, `after smmu ${(RAM + 0x40).toString(16)}+4 is 0`]);
    expect(woken).toEqual([RAM + 0x40]);
    // Not RAM, misaligned, straddling the end of RAM, not an address: nothing written, submit it instead.
    for (const pa of [0x1000, 0x2c1c_0000 + V2M_MSI_SETSPI_NS, RAM + 0x42, RAM + 0x10_0000 - 2, -4, 2 ** 60]) {
      expect(ic.postRam32('smmu', pa, 7)).toBeNull();
    }
    expect(seen).toHaveLength(2);
    // An observer that throws makes it a bus error (as for a submitted write), not an exception.
    ic.onRamWrite(() => {
      throw new Error('observer broke');
    });
    expect(ic.postRam32('smmu', RAM + 0x80, 1)).toEqual({ status: 'bus-error', detail: 'observer broke' });
  });

  it('a DMA write to a GICv2m doorbell raises the SPI (a device MSI)', async () => {
    const m = machine();
    const gic = m.addGic('/intc', 2, 'arm,gic-400');
    m.addV2mFrame('/intc/v2m@0', 0x2c1c_0000, 0x1_0000, gic, 224, 32);
    let hit = 0;
    m.cpu.requestIrq('/intc', [0, 230 - 32, 1], () => hit++);
    const dev = m.addPlatformMaster('/soc/dev', [{ streamId: 1, iommu: null }]);
    const data = new Uint8Array(4);
    new DataView(data.buffer).setUint32(0, 230, true);
    const c = await dev.write(0x2c1c_0000 + V2M_MSI_SETSPI_NS, data);
    expect(c.status).toBe('ok');
    expect(hit).toBe(0);
    m.scheduler.runSyncUntilIdle();
    expect(hit).toBe(1);
    // A sub-word write to a device is refused, not half-done.
    const bad = await dev.write(0x2c1c_0000 + V2M_MSI_SETSPI_NS, bytes(1, 2));
    expect(bad.status).toBe('bus-error');
  });

  it('a device model that throws becomes a bus error', async () => {
    const m = machine();
    m.mapMmio(0x9000_0000, 0x1000, {
      name: 'angry',
      read32: () => {
        throw new Error('angry device');
      },
      write32: () => {},
    });
    const dev = m.addPlatformMaster('/soc/dev', [{ streamId: 1, iommu: null }]);
    const c = await dev.read(0x9000_0000, 4);
    expect(c).toEqual({ status: 'bus-error', detail: 'angry device' });
  });

  it('traces one dma event per transaction with outcome and landing address', async () => {
    const m = machine();
    const dev = m.addPlatformMaster('/soc/dev', [{ streamId: 9, iommu: null }], { pasidBits: 4 });
    const rec = m.trace.record(['dma']);
    await dev.write(RAM + 8, bytes(1, 2), { ssid: 3 });
    await dev.read(0x10, 4);
    rec.stop();
    expect(rec.events).toHaveLength(2);
    expect(rec.events[0]).toMatchObject({ kind: 'dma', track: '/soc/dev', op: 'write', streamId: 9, ssid: 3, addr: RAM + 8, len: 2, outcome: 'ok', pa: RAM + 8 });
    expect(rec.events[1]).toMatchObject({ op: 'read', ssid: null, pa: null });
    expect((rec.events[1] as { outcome: string }).outcome).toMatch(/^bus-error: /);
  });

  it('refuses requests the master could never make', () => {
    const m = machine();
    const dev = m.addPlatformMaster('/soc/dev', [{ streamId: 9, iommu: null }, { streamId: 10, iommu: null }], { pasidBits: 2 });
    expect(() => dev.submitRead(RAM, 4, { ssid: 4 }, () => {})).toThrow(/SSID 4 does not fit its 2 PASID bit/);
    expect(() => dev.submitRead(RAM, 4, { streamId: 11 }, () => {})).toThrow(/no stream ID 11/);
    expect(() => dev.submitRead(RAM, 0, {}, () => {})).toThrow(/length 0/);
    let sid = -1;
    m.interconnect.onRamWrite(() => {});
    dev.setRoute(10, { submit: (req, done) => { sid = req.streamId; done({ status: 'ok' }); } }, null);
    dev.submitRead(RAM, 4, { streamId: 10 }, () => {});
    expect(sid).toBe(10);
  });

  it('carries stream ID, SSID and read/write/exec/privileged attributes to the port it is routed to', async () => {
    const m = machine();
    const seen: Omit<DmaRequest, 'data'>[] = [];
    const port: DmaPort = {
      submit: (req, done) => {
        const { data, ...rest } = req;
        seen.push(rest);
        done(data ? { status: 'ok', pa: req.addr } : { status: 'ok', data: new Uint8Array(req.len), pa: req.addr });
      },
    };
    const dev = m.addPlatformMaster('/soc/dev', [{ streamId: 7, iommu: null }, { streamId: 8, iommu: null }], { pasidBits: 8 });
    dev.setRoute(8, port, '/iommu@1000');
    await dev.read(0x4000, 16, { streamId: 8, ssid: 0xff, exec: true, priv: true });
    await dev.write(0x5000, bytes(1, 2, 3), { streamId: 8 });
    await dev.read(0x6000, 4, { streamId: 8, ssid: 0 });
    expect(seen).toEqual([
      { master: '/soc/dev', streamId: 8, ssid: 0xff, ssidValid: true, addr: 0x4000, len: 16, write: false, exec: true, priv: true },
      { master: '/soc/dev', streamId: 8, ssid: 0, ssidValid: false, addr: 0x5000, len: 3, write: true, exec: false, priv: false },
      { master: '/soc/dev', streamId: 8, ssid: 0, ssidValid: true, addr: 0x6000, len: 4, write: false, exec: false, priv: false },
    ]);
    // Stream 7 still reaches memory directly: nothing on it went through the port.
    expect((await dev.write(RAM, bytes(4), { streamId: 7 })).status).toBe('ok');
    expect(seen).toHaveLength(3);
    expect(m.memory.read8(RAM)).toBe(4);
  });

  it('keeps a transaction outstanding while its port holds it (a stall)', async () => {
    const m = machine();
    let release: (() => void) | null = null;
    const dev = m.addPlatformMaster('/soc/dev', [{ streamId: 1, iommu: null }], { canStall: true });
    dev.setRoute(1, {
      submit: (req, done) => {
        release = () => done(m.interconnect.access(req));
      },
    }, '/iommu');
    const p = dev.write(RAM, bytes(5));
    expect(dev.stats.outstanding).toBe(1);
    expect(m.memory.read8(RAM)).toBe(0);
    release!();
    expect((await p).status).toBe('ok');
    expect(dev.stats.outstanding).toBe(0);
    expect(m.memory.read8(RAM)).toBe(5);
    expect(dev.canStall).toBe(true);
  });
});
