import { describe, expect, it } from 'vitest';
import { GenericInterruptController, GicController, GITS_TRANSLATER, V2M_MSI_IIDR, V2M_MSI_SETSPI_NS, V2M_MSI_TYPER } from '../../hw/gic.js';
import { Machine } from '../../hw/machine.js';

function machineWithGic(version: 2 | 3 = 2): { m: Machine; gic: GicController } {
  const m = new Machine({ seed: 1, irqLatencyNs: 50 });
  const gic = m.addGic('/intc@8000000', version, version === 3 ? 'arm,gic-v3' : 'arm,gic-400');
  return { m, gic };
}

describe('GIC delivery', () => {
  it('runs the handler in a later scheduler step, never inside raise()', () => {
    const { m, gic } = machineWithGic();
    const calls: number[] = [];
    m.cpu.requestIrq('/intc@8000000', [0, 10, 4], () => calls.push(m.scheduler.now));
    gic.raise(42);
    expect(calls).toEqual([]);
    expect(gic.isPending([0, 10, 4])).toBe(true);
    m.scheduler.runSyncUntilIdle();
    expect(calls).toEqual([50]);
    expect(gic.isPending([0, 10, 4])).toBe(false);
    expect(gic.statsOf(42)).toEqual({ raised: 1, coalesced: 0, delivered: 1, unhandled: 0 });
  });

  it('numbers SPIs from INTID 32 and PPIs from INTID 16', () => {
    const { gic } = machineWithGic();
    expect(gic.keyOf([0, 0, 4])).toBe(32);
    expect(gic.keyOf([0, 10, 4])).toBe(42);
    expect(gic.keyOf([0, 987, 4])).toBe(1019);
    expect(gic.keyOf([1, 0, 0xf04])).toBe(16);
    expect(gic.keyOf([1, 9, 0x3f04])).toBe(25);
    expect(() => gic.keyOf([1, 16, 4])).toThrow(/PPI number 16 is out of range/);
    expect(() => gic.keyOf([0, 988, 4])).toThrow(/SPI number 988/);
    expect(() => gic.keyOf([2, 0, 4])).toThrow(/GICv2 has no interrupt of type 2/);
    expect(() => gic.keyOf([0, 1])).toThrow(/needs 3 cells/);
    expect(() => gic.raise(5)).toThrow(RangeError);
  });

  it('knows GICv3 extended SPI and PPI ranges', () => {
    const { gic } = machineWithGic(3);
    expect(gic.keyOf([2, 0, 4])).toBe(4096);
    expect(gic.keyOf([3, 63, 4])).toBe(1119);
    expect(() => gic.keyOf([3, 64, 4])).toThrow();
  });

  it('delivers a PPI to the handler attached by its specifier', () => {
    const { m, gic } = machineWithGic();
    let hits = 0;
    m.cpu.requestIrq('/intc@8000000', [1, 9, 4], () => hits++);
    gic.line([1, 9, 4]).raise();
    gic.raise(25);
    m.scheduler.runSyncUntilIdle();
    // Both raises happened before the delivery step: the pending latch merged them.
    expect(hits).toBe(1);
    expect(gic.statsOf(25)).toMatchObject({ raised: 2, coalesced: 1, delivered: 1 });
  });

  it('counts a delivery with no handler as unhandled, and stops calling a detached handler', () => {
    const { m, gic } = machineWithGic();
    gic.raise(40);
    m.scheduler.runSyncUntilIdle();
    expect(gic.statsOf(40).unhandled).toBe(1);
    expect(gic.totals.unhandled).toBe(1);

    let hits = 0;
    const detach = m.cpu.requestIrq('/intc@8000000', [0, 8, 4], () => hits++);
    gic.raise(40);
    m.scheduler.runSyncUntilIdle();
    detach();
    gic.raise(40);
    m.scheduler.runSyncUntilIdle();
    expect(hits).toBe(1);
    expect(gic.statsOf(40)).toMatchObject({ raised: 3, delivered: 1, unhandled: 2 });
  });

  it('rejects requestIrq on a controller that does not exist or a bad specifier', () => {
    const { m } = machineWithGic();
    expect(() => m.cpu.requestIrq('/nope', [0, 1, 4], () => {})).toThrow(/no interrupt controller at \/nope/);
    expect(() => m.cpu.requestIrq('/intc@8000000', [7, 1, 4], () => {})).toThrow(/type 7/);
  });

  it('emits irq trace events with the line name', () => {
    const { m, gic } = machineWithGic();
    const rec = m.trace.record(['irq']);
    gic.raise(74);
    rec.stop();
    expect(rec.events).toEqual([{ kind: 'irq', time: 0, track: '/intc@8000000', line: 'SPI 42 (INTID 74)' }]);
  });
});

describe('generic interrupt controller', () => {
  it('keys lines by the whole specifier and checks #interrupt-cells', () => {
    const m = new Machine({ seed: 3 });
    const c = new GenericInterruptController('/soc/gpio@1000', 'vendor,gpio', 2, m.scheduler, m.trace, 10);
    m.addInterruptController(c);
    const seen: string[] = [];
    m.cpu.requestIrq('/soc/gpio@1000', [5, 1], () => seen.push('5,1'));
    m.cpu.requestIrq('/soc/gpio@1000', [6, 1], () => seen.push('6,1'));
    c.raise([6, 1]);
    m.scheduler.runSyncUntilIdle();
    expect(seen).toEqual(['6,1']);
    expect(() => c.raise([6])).toThrow(/#interrupt-cells is 2/);
  });
});

describe('MSI doorbells', () => {
  it('GICv2m: MSI_TYPER reports the SPI block and a write to MSI_SETSPI_NS raises that SPI', () => {
    const { m, gic } = machineWithGic();
    const frame = m.addV2mFrame('/intc@8000000/v2m@0', 0x8020000, 0x1000, gic, 96, 32);
    expect(m.cpu.mmioRead32(0x8020000 + V2M_MSI_TYPER)).toBe((96 << 16) | 32);
    expect(m.cpu.mmioRead32(0x8020000 + V2M_MSI_IIDR)).toBe(0x43b);
    const got: number[] = [];
    // INTID 100 is SPI 68.
    m.cpu.requestIrq('/intc@8000000', [0, 68, 1], () => got.push(m.scheduler.now));
    const rec = m.trace.record(['msi', 'irq']);
    m.cpu.mmioWrite32(0x8020000 + V2M_MSI_SETSPI_NS, 100);
    expect(got).toEqual([]); // not inside the write
    m.scheduler.runSyncUntilIdle();
    rec.stop();
    expect(got).toHaveLength(1);
    expect(frame.accepted).toBe(1);
    expect(rec.events.map((e) => e.kind)).toEqual(['msi', 'irq']);
    expect(rec.events[0]).toMatchObject({ address: 0x8020040, data: 100 });

    // Outside the frame's block: dropped and counted, nothing raised.
    m.cpu.mmioWrite32(0x8020000 + V2M_MSI_SETSPI_NS, 95);
    m.cpu.mmioWrite32(0x8020000 + V2M_MSI_SETSPI_NS, 128);
    m.scheduler.runSyncUntilIdle();
    expect(frame.rejected).toBe(2);
    expect(gic.totals.raised).toBe(1);
  });

  it('GICv2m: refuses an SPI block outside the GIC’s SPIs', () => {
    const { m, gic } = machineWithGic();
    expect(() => m.addV2mFrame('/f', 0x9000000, 0x1000, gic, 1000, 64)).toThrow(/does not fit/);
    expect(() => m.addV2mFrame('/f', 0x9000000, 0x1000, gic, 16, 8)).toThrow(/does not fit/);
  });

  it('ITS: GITS_TRANSLATER counts writes and keeps the EventIDs; other registers read zero', () => {
    const { m } = machineWithGic(3);
    const its = m.addItsDoorbell('/intc/its@8080000', 0x8080000, 0x20000);
    m.cpu.mmioWrite32(0x8080000 + GITS_TRANSLATER, 7);
    m.cpu.mmioWrite32(0x8080000 + GITS_TRANSLATER, 9);
    m.cpu.mmioWrite32(0x8080000 + 0x80, 1); // GITS_CBASER-ish: ignored
    expect(its.writes).toBe(2);
    expect(its.eventIds).toEqual([7, 9]);
    expect(m.cpu.mmioRead32(0x8080000 + 0x8)).toBe(0);
    expect(its.doorbell).toBe(0x8090040);
  });
});

describe('kexec', () => {
  it('detachAllIrqHandlers leaves a line with no handler, so the next delivery is unhandled', () => {
    const m = new Machine({ seed: 1 });
    const gic = m.addGic('/intc', 3, 'arm,gic-v3');
    let old = 0;
    m.cpu.requestIrq('/intc', [0, 3, 4], () => old++);
    m.detachAllIrqHandlers();
    gic.raise(35);
    m.scheduler.runSyncUntilIdle();
    expect(old).toBe(0);
    expect(gic.statsOf(35).unhandled).toBe(1);
  });
});
