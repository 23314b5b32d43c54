import { describe, expect, it } from 'vitest';
import type { MmioDevice } from '../../hw/mmio.js';
import { MmioAccessError, MmioMap, MmioOverlapError } from '../../hw/mmio.js';
import { Trace } from '../../hw/trace.js';

/** A device that records every access and answers reads with offset-derived values. */
class Recorder implements MmioDevice {
  readonly log: string[] = [];
  constructor(readonly name: string) {}
  read32(off: number): number {
    this.log.push(`r32 ${off}`);
    return (0xa0000000 + off) >>> 0;
  }
  write32(off: number, v: number): void {
    this.log.push(`w32 ${off} ${v.toString(16)}`);
  }
}

class Wide extends Recorder {
  read64(off: number): bigint {
    this.log.push(`r64 ${off}`);
    return 0x1122334455667788n;
  }
  write64(off: number, v: bigint): void {
    this.log.push(`w64 ${off} ${v.toString(16)}`);
  }
}

function newMap(): { map: MmioMap; trace: Trace } {
  const trace = new Trace();
  let t = 0;
  return { map: new MmioMap(trace, () => t++), trace };
}

describe('MmioMap', () => {
  it('rejects an overlapping region with an error naming both regions', () => {
    const { map } = newMap();
    map.map(0x1000, 0x1000, new Recorder('/soc/uart@1000'));
    const attempt = (): unknown => map.map(0x1800, 0x1000, new Recorder('/soc/timer@1800'));
    expect(attempt).toThrow(MmioOverlapError);
    expect(attempt).toThrow(/\/soc\/timer@1800 \[0x1800, 0x2800\) overlaps \/soc\/uart@1000 \[0x1000, 0x2000\)/);
    // Overlap from below, and a region swallowing an existing one, are caught too.
    expect(() => map.map(0x800, 0x1000, new Recorder('a'))).toThrow(MmioOverlapError);
    expect(() => map.map(0x0, 0x10000, new Recorder('b'))).toThrow(MmioOverlapError);
    // Touching regions are fine.
    map.map(0x2000, 0x1000, new Recorder('c'));
    map.map(0x0, 0x1000, new Recorder('d'));
    expect(map.regions.map((r) => r.base)).toEqual([0x0, 0x1000, 0x2000]);
  });

  it('dispatches to the right device among many regions', () => {
    const { map } = newMap();
    const devs: Recorder[] = [];
    // Insert out of order to exercise the sorted insert and binary search.
    for (const i of [7, 2, 9, 0, 4, 1, 8, 3, 6, 5]) {
      const d = new Recorder(`dev${i}`);
      devs[i] = d;
      map.map(0x10000 * (i + 1), 0x100, d);
    }
    for (let i = 0; i < 10; i++) {
      expect(map.read32(0x10000 * (i + 1) + 0x10)).toBe(0xa0000010);
      expect(devs[i].log).toEqual(['r32 16']);
    }
    expect(map.find(0x10000 * 3 + 0x100)).toBeNull();
    expect(map.covers(0x20000, 0x100)).toBe(true);
    expect(map.covers(0x20000, 0x101)).toBe(false);
  });

  it('splits a 64-bit access to a 32-bit-only device into two, low word first', () => {
    const { map } = newMap();
    const d = new Recorder('dev');
    map.map(0x4000, 0x100, d);
    expect(map.read64(0x4008)).toBe((0xa000000cn << 32n) | 0xa0000008n);
    map.write64(0x4010, 0xdeadbeef_cafef00dn);
    expect(d.log).toEqual(['r32 8', 'r32 12', 'w32 16 cafef00d', 'w32 20 deadbeef']);
  });

  it('uses a device’s own 64-bit accessors when it has them', () => {
    const { map } = newMap();
    const d = new Wide('wide');
    map.map(0x4000, 0x100, d);
    expect(map.read64(0x4020)).toBe(0x1122334455667788n);
    map.write64(0x4020, 5n);
    expect(d.log).toEqual(['r64 32', 'w64 32 5']);
  });

  it('throws a MmioAccessError naming the address for unmapped, misaligned and overrunning accesses', () => {
    const { map } = newMap();
    map.map(0x4000, 0x10, new Recorder('dev'));
    expect(() => map.read32(0x9000)).toThrow(MmioAccessError);
    expect(() => map.read32(0x9000)).toThrow(/PA 0x9000: no device is mapped there/);
    expect(() => map.write32(0x5000, 1)).toThrow(/write32 at PA 0x5000/);
    expect(() => map.read32(0x4002)).toThrow(/not 4-byte aligned/);
    expect(() => map.read64(0x4004)).toThrow(/not 8-byte aligned/);
    expect(() => map.read64(0x4010)).toThrow(/no device/);
    const { map: m2 } = newMap();
    m2.map(0x4000, 0xc, new Recorder('short'));
    expect(() => m2.read64(0x4008)).toThrow(/runs off the end of short/);
  });

  it('emits an mmio trace event for every access while tracing, and none otherwise', () => {
    const { map, trace } = newMap();
    map.map(0x4000, 0x100, new Recorder('/dev@4000'));
    map.read32(0x4000); // not recorded
    const rec = trace.record(['mmio']);
    map.write32(0x4004, 0x55);
    map.read64(0x4008);
    rec.stop();
    map.read32(0x4000);
    expect(rec.events).toHaveLength(2);
    expect(rec.events[0]).toMatchObject({ kind: 'mmio', op: 'write', pa: 0x4004, offset: 4, width: 32, value: 0x55n, track: '/dev@4000' });
    expect(rec.events[1]).toMatchObject({ kind: 'mmio', op: 'read', pa: 0x4008, offset: 8, width: 64 });
  });

  it('a window (what ioremap keeps) reaches its device without a lookup, traced as map accesses are, and follows an unmap', () => {
    const { map, trace } = newMap();
    const dev = new Recorder('/dev@4000');
    const region = map.map(0x4000, 0x100, dev);
    expect(map.window(0x4000, 0x101)).toBeNull(); // runs off the region
    expect(map.window(0x9000, 4)).toBeNull(); // no device
    const win = map.window(0x4040, 0x40)!;
    const rec = trace.record(['mmio']);
    win.write32(8, 0x55);
    expect(win.read32(0x3c)).toBe(0xa0000000 + 0x7c);
    rec.stop();
    expect(dev.log).toEqual(['w32 72 55', 'r32 124']);
    expect(rec.events.map((e) => e as unknown as Record<string, unknown>)).toMatchObject([
      { kind: 'mmio', op: 'write', pa: 0x4048, offset: 0x48, width: 32, value: 0x55n, track: '/dev@4000' },
      { kind: 'mmio', op: 'read', pa: 0x407c, offset: 0x7c, width: 32, track: '/dev@4000' },
    ]);
    // Outside the window or misaligned: the map's own checks, as without a window.
    expect(() => win.write32(2, 1)).toThrow(/MMIO write32 at PA 0x4042: not 4-byte aligned/);
    expect(win.read32(0x40)).toBe(0xa0000000 + 0x80); // past the window, still in the region
    // Unmapped: the old window goes through the map, which now has another device there or none.
    map.unmap(region);
    expect(() => win.read32(0)).toThrow(MmioAccessError);
    const next = new Recorder('/other@4000');
    map.map(0x4000, 0x100, next);
    win.write32(4, 7);
    expect(next.log).toEqual(['w32 68 7']);
    expect(dev.log).toHaveLength(3);
  });

  it('peek32 reads without side effects and unmap removes a region', () => {
    const { map } = newMap();
    const d = new Recorder('dev');
    const region = map.map(0x4000, 0x100, d);
    expect(map.peek32(0x4000)).toBe(0); // no peek32 on this device
    expect(d.log).toEqual([]);
    map.unmap(region);
    expect(() => map.read32(0x4000)).toThrow(MmioAccessError);
  });
});
