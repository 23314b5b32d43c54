import { afterEach, describe, expect, it } from 'vitest';
import type { DmaDone, DmaPort, DmaRequest } from '../../hw/dma.js';
import { MachineFirmwareError } from '../../hw/firmware.js';
import type { IommuModelContext } from '../../hw/iommu-models.js';
import { registerIommuModel } from '../../hw/iommu-models.js';
import { Machine } from '../../hw/machine.js';
import { PCI_ATS_CTRL_ENABLE, PCI_COMMAND_MASTER } from '../../hw/pci/endpoint.js';
import { ecamOffset } from '../../hw/pci/root-complex.js';
import { DtBuilder, ranges, reg } from '../../bus/of/dt-builder.js';
import { board } from '../lib/board.js';

/** A small virt-like machine in DT form. */
function virtBoard(): DtBuilder {
  const { b, gic } = board({
    ram: [
      { base: 0x8000_0000, size: 0x1000_0000 },
      { base: 0x1_0000_0000, size: 0x800_0000 },
      { base: 0x2_0000_0000, size: 0x800_0000, disabled: true },
    ],
    gic: { compatible: ['arm,gic-400', 'arm,cortex-a15-gic'], children: { cells: 1, ranges: ranges([0x0, 0x802_0000, 0x2_0000]) } },
  });
  gic.node('v2m@0', { compatible: 'arm,gic-v2m-frame', 'msi-controller': true, reg: reg([0x0, 0x1000]), 'arm,msi-base-spi': 64, 'arm,msi-num-spis': 32 });
  gic.node('v2m@10000', { compatible: 'arm,gic-v2m-frame', 'msi-controller': true, reg: reg([0x1_0000, 0x1000]) });
  const smmu3 = b.node('/iommu@9050000', {
    compatible: 'arm,smmu-v3',
    reg: reg([0x905_0000, 0x2_0000]),
    interrupts: [0, 74, 1, 0, 75, 1],
    'interrupt-names': ['eventq', 'gerror'],
    '#iommu-cells': 1,
  });
  const mmu401 = b.node('/iommu@2b400000', {
    compatible: ['arm,mmu-401', 'arm,smmu-v1'],
    reg: reg([0x2b40_0000, 0x1_0000]),
    '#iommu-cells': 1,
    status: 'disabled',
  });
  const mmu500 = b.node('/iommu@2b500000', {
    compatible: ['qcom,sm8250-smmu-500', 'qcom,smmu-500', 'arm,mmu-500'],
    reg: reg([0x2b50_0000, 0x1_0000]),
    '#iommu-cells': 2,
    '#global-interrupts': 1,
    interrupts: [0, 80, 4, 0, 81, 4],
  });
  const soc = b.node('/soc', { compatible: 'simple-bus', '#address-cells': 2, '#size-cells': 2, ranges: true });
  soc.node('dma@a000000', { compatible: 'vendor,dma', reg: reg([0xa00_0000, 0x1000]), iommus: [smmu3, 0x10, smmu3, 0x11], 'dma-can-stall': true, 'pasid-num-bits': 5 });
  soc.node('gpu@b000000', { compatible: 'vendor,gpu', iommus: [mmu500, 0x800, 0x7f] });
  soc.node('video@c000000', { compatible: 'vendor,video', iommus: [mmu401, 0x5] });
  soc.node('off@d000000', { compatible: 'vendor,off', iommus: [smmu3, 0x20], status: 'disabled' });
  soc.node('dead', { compatible: 'simple-bus', status: 'disabled' }).node('child', { compatible: 'vendor,child', iommus: [smmu3, 0x21] });
  soc.node('uart@9000000', { compatible: ['arm,pl011', 'arm,primecell'], reg: reg([0x900_0000, 0x1000]) });
  const pcie = b.node('/pcie@40000000', {
    compatible: 'pci-host-ecam-generic',
    device_type: 'pci',
    reg: reg([0x4000_0000, 0x100_0000]),
    'bus-range': [0, 0xff],
    '#address-cells': 3,
    '#size-cells': 2,
    'iommu-map': [0x0, smmu3, 0x100, 0x1_0000],
    'ats-supported': true,
  });
  pcie.node('ep@1,0', { reg: [0x0800, 0, 0, 0, 0], 'pasid-num-bits': 16, 'iommu-sim,ats': true, 'iommu-sim,pri': true, 'vendor-id': 0x1234 });
  pcie.node('ep@2,1', { reg: [0x1100, 0, 0, 0, 0] });
  pcie.node('pcie@3,0', { device_type: 'pci', reg: [0x1800, 0, 0, 0, 0], '#address-cells': 3, '#size-cells': 2 }).node('ep@0,0', { reg: [0x10000, 0, 0, 0, 0] });
  return b;
}

describe('Machine.fromDeviceTree', () => {
  it('makes RAM, interrupt controllers, IOMMUs, masters and PCI hosts from the tree', () => {
    const m = Machine.fromDeviceTree(virtBoard().build(), { seed: 1, iommuModels: false });
    const d = m.describe();
    expect(d.ram).toEqual([
      { base: 0x8000_0000, size: 0x1000_0000 },
      { base: 0x1_0000_0000, size: 0x800_0000 },
    ]);
    expect(d.interruptControllers).toEqual([{ node: '/intc@8000000', compatible: 'arm,gic-400', kind: 'gic-v2' }]);
    expect(d.iommus.map((i) => [i.node, i.status])).toEqual([
      ['/iommu@9050000', 'no-model'],
      ['/iommu@2b400000', 'disabled'],
      ['/iommu@2b500000', 'no-model'],
    ]);
    expect(d.iommus[2].compatible).toEqual(['qcom,sm8250-smmu-500', 'qcom,smmu-500', 'arm,mmu-500']);
    expect(d.masters).toEqual([
      {
        node: '/soc/dma@a000000',
        iommus: [
          { iommu: '/iommu@9050000', cells: [0x10] },
          { iommu: '/iommu@9050000', cells: [0x11] },
        ],
        streams: [
          { streamId: 0x10, iommu: null },
          { streamId: 0x11, iommu: null },
        ],
        canStall: true,
        pasidBits: 5,
      },
      { node: '/soc/gpu@b000000', iommus: [{ iommu: '/iommu@2b500000', cells: [0x800, 0x7f] }], streams: [{ streamId: 0x800, iommu: null }], canStall: false, pasidBits: 0 },
      { node: '/soc/video@c000000', iommus: [{ iommu: '/iommu@2b400000', cells: [5] }], streams: [{ streamId: 5, iommu: null }], canStall: false, pasidBits: 0 },
    ]);
    expect(m.masters.has('/soc/off@d000000')).toBe(false);
    expect(m.masters.has('/soc/dead/child')).toBe(false);
    const [host] = d.pciHosts;
    expect(host).toMatchObject({
      node: '/pcie@40000000',
      ecam: { base: 0x4000_0000, size: 0x100_0000 },
      busRange: [0, 15], // the ECAM window holds 16 buses
      iommuMap: [{ ridBase: 0, iommu: '/iommu@9050000', sidBase: 0x100, length: 0x1_0000 }],
      atsSupported: true,
    });
    expect(host.endpoints).toEqual([
      { node: '/pcie@40000000/ep@1,0', bdf: '00:01.0', rid: 0x8, streamId: 0x108, iommu: null, ats: true, pri: true, pasidBits: 16 },
      { node: '/pcie@40000000/ep@2,1', bdf: '00:02.1', rid: 0x11, streamId: 0x111, iommu: null, ats: false, pri: false, pasidBits: 0 },
    ]);
    expect(d.skipped.map((s) => [s.path, s.compatible])).toEqual([
      ['/soc/uart@9000000', ['arm,pl011', 'arm,primecell']],
      ['/pcie@40000000/pcie@3,0', []],
    ]);
    expect(d.skipped[0].reason).toBe('no model');
    expect(d.skipped[1].reason).toMatch(/bridges are not modelled/);
    expect(d.warnings.some((w) => /trimmed|overlap/.test(w))).toBe(false);
  });

  it('gives the CPU the regions: placeholders read zero, the unmapped faults, ECAM and MSI frames answer', () => {
    const m = Machine.fromDeviceTree(virtBoard().build(), { seed: 1, iommuModels: false });
    m.cpu.mmioWrite32(0x905_0020, 0xffff_ffff); // CR0 of an unmodelled SMMUv3: ignored
    expect(m.cpu.mmioRead32(0x905_0020)).toBe(0);
    expect(m.cpu.mmioRead64(0x906_0000)).toBe(0n);
    expect(m.cpu.mmioPresent(0x905_0000, 0x2_0000)).toBe(true);
    expect(m.cpu.mmioPresent(0x2b40_0000, 4)).toBe(false); // disabled SMMU: no device
    expect(() => m.cpu.mmioRead32(0x2b40_0000)).toThrow(/0x2b400000/);
    expect(m.cpu.mmioRead32(0x4000_0000 + ecamOffset(0, 1, 0, 0))).toBe(0xff801234);
    expect(m.cpu.mmioRead32(0x4000_0000 + ecamOffset(0, 2, 1, 0))).toBe(0xff8013b5);
    expect(m.cpu.mmioRead32(0x4000_0000 + ecamOffset(0, 3, 0, 0))).toBe(0xffffffff);
    // v2m frames at their translated addresses: firmware-given block and the default for frame 1.
    expect(m.cpu.mmioRead32(0x802_0008)).toBe((64 << 16) | 32);
    expect(m.cpu.mmioRead32(0x803_0008)).toBe(((448 + 64) << 16) | 64);
    expect(m.cpu.firmware.dtb).toBeNull();
  });

  it('routes platform masters straight to memory when their IOMMU has no model', async () => {
    const m = Machine.fromDeviceTree(virtBoard().build(), { seed: 1, iommuModels: false });
    const dma = m.masters.get('/soc/dma@a000000')!;
    const c = await dma.write(0x1_0000_0100, Uint8Array.of(1, 2, 3), { streamId: 0x11, ssid: 31 });
    expect(c).toEqual({ status: 'ok', pa: 0x1_0000_0100 });
    expect(m.memory.read16(0x1_0000_0101)).toBe(0x0302);
    expect((await dma.read(0x2_0000_0000, 4)).status).toBe('bus-error'); // disabled memory node
  });

  it('delivers an interrupt named by firmware to the handler the kernel attached', () => {
    const m = Machine.fromDeviceTree(virtBoard().build(), { seed: 1, irqLatencyNs: 30 });
    const at: number[] = [];
    m.cpu.requestIrq('/intc@8000000', [0, 74, 1], () => at.push(m.scheduler.now));
    m.gic('/intc@8000000').raise(74 + 32);
    m.scheduler.runSyncUntilIdle();
    expect(at).toEqual([30]);
  });

  it('reports overlapping regions of real-world firmware as warnings instead of failing', () => {
    const b = virtBoard();
    const dup = b.node('/iommu@9050000-dup', {
      compatible: 'arm,smmu-v3',
      reg: reg([0x905_0000, 0x2_0000]),
      '#iommu-cells': 1,
    });
    expect(dup.path).toBe('/iommu@9050000-dup');
    const m = Machine.fromDeviceTree(b.build(), { seed: 1, iommuModels: false });
    expect(m.warnings.some((w) => w.includes('/iommu@9050000-dup') && w.includes('overlaps /iommu@9050000'))).toBe(true);
    expect(m.iommus.get('/iommu@9050000-dup')!.status).toBe('no-model');
  });

  it('throws MachineFirmwareError naming the node for structurally malformed properties', () => {
    const b = virtBoard();
    b.node('/bad-master', { iommus: [77, 1] });
    const t = b.build();
    expect(() => Machine.fromDeviceTree(t, { seed: 1 })).toThrow(MachineFirmwareError);
    expect(() => Machine.fromDeviceTree(t, { seed: 1 })).toThrow(/phandle 77.*node \/bad-master/);
  });
});

describe('IOMMU model registry', () => {
  let unregister: (() => void) | null = null;
  afterEach(() => {
    unregister?.();
    unregister = null;
  });

  it('instantiates a registered model with its regions, interrupts and options, and routes masters through it', async () => {
    const seen: { ctx: IommuModelContext | null; requests: DmaRequest[]; bound: [number, string][] } = { ctx: null, requests: [], bound: [] };
    unregister = registerIommuModel(
      ['arm,smmu-v3'],
      (ctx) => {
        seen.ctx = ctx;
        const regs = new Map<number, number>();
        const interconnect = ctx.machine.interconnect;
        return {
          status: 'modelled',
          model: 'test-v3',
          mmio: [{ base: ctx.regions[0].base, size: ctx.regions[0].size, device: { name: ctx.node.path, read32: (o) => regs.get(o) ?? 0, write32: (o, v) => void regs.set(o, v) } }],
          portFor: (master) => {
            const port: DmaPort = {
              submit: (req: DmaRequest, done: DmaDone) => {
                seen.requests.push(req);
                // "Translate" by adding 0x8000_0000.
                done(interconnect.access({ ...req, addr: req.addr + 0x8000_0000 }));
              },
              bindEndpoint: (sid, ep) => void seen.bound.push([sid, ep.name]),
            };
            expect(master.cells.length).toBeGreaterThan(0);
            return port;
          },
        };
      },
      'test-v3',
    );
    const m = Machine.fromDeviceTree(virtBoard().build(), { seed: 1, iommuOptions: { 'test-v3': { gbpaAbort: true } } });
    const ctx = seen.ctx!;
    expect(ctx.node.path).toBe('/iommu@9050000');
    expect(ctx.regions).toEqual([{ base: 0x905_0000, size: 0x2_0000 }]);
    expect(ctx.interrupts.map((l) => [l?.name, l?.specifier])).toEqual([
      ['eventq', [0, 74, 1]],
      ['gerror', [0, 75, 1]],
    ]);
    expect(ctx.options).toEqual({ gbpaAbort: true });
    expect(m.describe().iommus[0]).toMatchObject({ status: 'modelled', model: 'test-v3' });

    // The model's registers are live.
    m.cpu.mmioWrite32(0x905_0020, 5);
    expect(m.cpu.mmioRead32(0x905_0020)).toBe(5);

    // Platform master streams go through the model's port.
    const dma = m.masters.get('/soc/dma@a000000')!;
    expect(dma.streams.map((s) => s.iommu)).toEqual(['/iommu@9050000', '/iommu@9050000']);
    const c = await dma.write(0x100, Uint8Array.of(9), { streamId: 0x11 });
    expect(c).toEqual({ status: 'ok', pa: 0x8000_0100 });
    expect(seen.requests[0]).toMatchObject({ master: '/soc/dma@a000000', streamId: 0x11, addr: 0x100 });

    // The ATS-capable endpoint is bound to the model's port; the other is not.
    expect(seen.bound).toEqual([[0x108, '/pcie@40000000/ep@1,0']]);
    const ep = m.endpoint('/pcie@40000000/ep@1,0')!;
    expect(ep.streams[0].iommu).toBe('/iommu@9050000');
    const cfg = (reg: number): number => 0x4000_0000 + ecamOffset(0, 1, 0, reg);
    m.cpu.mmioWrite32(cfg(0x04), PCI_COMMAND_MASTER);
    expect((await ep.write(0x200, Uint8Array.of(4))).pa).toBe(0x8000_0200);
    expect(seen.requests[1]).toMatchObject({ streamId: 0x108, addr: 0x200 });
    expect(seen.requests[1].translated).toBeFalsy();
    // With ATS enabled, the port (no translate method) answers ATS requests as unsupported.
    m.cpu.mmioWrite32(cfg(ep.capabilityOffsets.ats + 4), PCI_ATS_CTRL_ENABLE << 16);
    expect((await m.scheduler.runUntilSettled(ep.write(0x200, Uint8Array.of(4)))).status).toBe('bus-error');
  });

  it('prefers the model of the most specific compatible, and reports a failing factory', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    b.node('/iommu@1000', { compatible: ['test,soc-iommu', 'test,generic-iommu'], reg: reg([0x1000, 0x1000]) });
    const order: string[] = [];
    const u1 = registerIommuModel(['test,generic-iommu'], () => {
      order.push('generic');
      throw new Error('generic model refused');
    }, 'generic');
    const u2 = registerIommuModel(['test,soc-iommu'], (ctx) => {
      order.push('soc');
      return { status: 'modelled', model: 'soc', mmio: [], portFor: () => ctx.machine.interconnect };
    }, 'soc');
    unregister = () => {
      u1();
      u2();
    };
    const m = Machine.fromDeviceTree(b.build(), { seed: 1 });
    expect(order).toEqual(['soc']);
    expect(m.iommus.get('/iommu@1000')).toMatchObject({ status: 'modelled', model: 'soc', compatible: ['test,soc-iommu', 'test,generic-iommu'] });
    u2();
    const m2 = Machine.fromDeviceTree(b.build(), { seed: 1 });
    expect(m2.iommus.get('/iommu@1000')).toMatchObject({ status: 'failed', error: 'generic model refused' });
    expect(m2.warnings.some((w) => w.includes('IOMMU model generic failed'))).toBe(true);
    // A newer registration for the same compatible stands in for the older one.
    const u3 = registerIommuModel(['test,generic-iommu'], (ctx) => ({ status: 'modelled', model: 'newer', mmio: [], portFor: () => ctx.machine.interconnect }), 'newer');
    const m3 = Machine.fromDeviceTree(b.build(), { seed: 1 });
    u3();
    expect(m3.iommus.get('/iommu@1000')!.model).toBe('newer');
    // With models turned off, nothing is instantiated and a non-SMMU node is not listed.
    expect(Machine.fromDeviceTree(b.build(), { seed: 1, iommuModels: false }).iommus.size).toBe(0);
  });
});

describe('CPU exclusive monitor (wfe wake-up)', () => {
  it('calls each monitor once, with its address, when a write by another agent lands on it; a disarmed one never', () => {
    const m = Machine.fromDeviceTree(virtBoard().build(), { seed: 1, iommuModels: false });
    const cpu = m.cpu;
    const woke: string[] = [];
    const a = (pa: number): void => {
      woke.push(`a ${pa.toString(16)}`);
    };
    const b = (pa: number): void => {
      woke.push(`b ${pa.toString(16)}`);
    };
    cpu.monitor!(0x8000_1000, a);
    cpu.monitor!(0x8000_1000, b);
    cpu.monitor!(0x8000_2000, a);
    cpu.monitor!(0x8000_3000, b);
    cpu.unmonitor!(0x8000_3000, b);
    const write = (addr: number, len: number): void => {
      m.interconnect.submit({ master: 'test', streamId: 0, ssid: 0, ssidValid: false, addr, len, write: true, exec: false, priv: true, data: new Uint8Array(len) }, () => {});
    };
    write(0x8000_3000, 4); // disarmed: nobody wakes
    write(0x8000_0ffc, 4); // next to the watched word, not on it
    expect(woke).toEqual([]);
    write(0x8000_0ffe, 4); // overlaps its first bytes: both monitors on it, newest first
    expect(woke).toEqual(['b 80001000', 'a 80001000']);
    write(0x8000_1000, 4); // one-shot: spent
    write(0x8000_2000, 8);
    expect(woke).toEqual(['b 80001000', 'a 80001000', 'a 80002000']);
    cpu.unmonitor!(0x8000_2000, a); // already fired: a no-op
  });
});
