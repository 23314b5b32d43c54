/**
 * The SMMUv3 model's table of stalled transactions: STAG allocation, release by (StreamID, STAG),
 * per-stream and global release in stall order, and the capacity (IDR5.STALL_MAX).
 */
import { describe, expect, it } from 'vitest';
import type { DmaRequest } from '../../../hw/dma.js';
import { StallTracker } from '../../../hw/smmu-v3/stalls.js';

const req = (addr: number): DmaRequest => ({ master: 'm', streamId: 1, ssid: 0, ssidValid: false, addr, len: 4, write: false, exec: false, priv: false });
const done = (): void => {};

describe('StallTracker', () => {
  it('hands out STAGs in sequence, never one still held, and holds up to its capacity', () => {
    const t = new StallTracker(4);
    expect([0, 1, 2, 3].map((i) => t.hold(1, req(i), done, i))).toEqual([0, 1, 2, 3]);
    expect(t.hold(1, req(9), done, 9)).toBe(-1);
    expect(t.take(1, 1)?.req.addr).toBe(1);
    expect(t.take(1, 1)).toBeUndefined();
    expect(t.hold(1, req(4), done, 4)).toBe(4);
    expect(t.count).toBe(4);
    expect(new StallTracker(0).hold(1, req(0), done, 0)).toBe(-1);
  });

  it('releases only for the StreamID that stalled, and walks the held ones in stall order', () => {
    const t = new StallTracker(64);
    for (let i = 0; i < 40; i++) t.hold(i % 3, req(i), done, i);
    expect(t.take(2, 0)).toBeUndefined(); // STAG 0 belongs to stream 0
    expect(t.take(0, 0)?.req.addr).toBe(0);
    const s1 = t.takeStream(1);
    expect(s1.map((x) => x.stag)).toEqual(Array.from({ length: 40 }, (_, i) => i).filter((i) => i % 3 === 1));
    expect(t.list().map((x) => x.stag)).toEqual(Array.from({ length: 40 }, (_, i) => i).filter((i) => i !== 0 && i % 3 !== 1));
    expect(t.takeAll().map((x) => x.stag)).toEqual(Array.from({ length: 40 }, (_, i) => i).filter((i) => i !== 0 && i % 3 !== 1));
    expect(t.count).toBe(0);
  });

  it('finds every held transaction through any order of releases (STAGs that share table slots)', () => {
    const t = new StallTracker(8); // a 16-slot table: STAGs 16 apart collide
    const held = new Map<number, number>();
    let n = 0;
    // Drive STAGs past the table size so probe runs wrap and mix.
    for (let round = 0; round < 50; round++) {
      while (t.count < 8) {
        const stag = t.hold(1, req(n), done, n);
        held.set(stag, n++);
      }
      // Release a pseudo-random half.
      for (const stag of [...held.keys()].filter((s) => (s * 7 + round) % 2 === 0)) {
        expect(t.take(1, stag)?.req.addr).toBe(held.get(stag));
        held.delete(stag);
      }
      for (const [stag, addr] of held) {
        expect(t.list().find((x) => x.stag === stag)?.req.addr).toBe(addr);
      }
      expect(t.count).toBe(held.size);
    }
  });
});
