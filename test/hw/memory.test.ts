/**
 * Sparse physical memory: RAM regions, frames allocated on first write only, little-endian
 * u8/u16/u32/u64 accessors (also across a frame boundary), bulk read/write/fill, and BusError for
 * anything outside RAM.
 */
import { describe, expect, it } from 'vitest';
import { BusError, FRAME_SIZE, PhysicalMemory } from '../../hw/memory.js';

const RAM = 0x8000_0000;

function mem(): PhysicalMemory {
  const m = new PhysicalMemory();
  m.addRegion(RAM, 0x10_0000);
  // A 48-bit machine: RAM high up costs nothing until touched.
  m.addRegion(0xf000_0000_0000, 0x100_0000_0000);
  return m;
}

describe('PhysicalMemory regions', () => {
  it('rejects unaligned, empty and overlapping regions, and keeps them sorted', () => {
    const m = new PhysicalMemory();
    m.addRegion(0x9000_0000, 0x1000);
    m.addRegion(0x8000_0000, 0x2000);
    expect(m.ramRegions).toEqual([
      { base: 0x8000_0000, size: 0x2000 },
      { base: 0x9000_0000, size: 0x1000 },
    ]);
    expect(() => m.addRegion(0x8000_0800, 0x1000)).toThrow(/not 4 KiB aligned/);
    expect(() => m.addRegion(0xa000_0000, 0)).toThrow(/not 4 KiB aligned/);
    expect(() => m.addRegion(0x8000_1000, 0x1000)).toThrow(/overlaps 0x80000000\+0x2000/);
    expect(() => m.addRegion(2 ** 53 - 0x1000, 0x2000)).toThrow(/beyond 2\^53/);
    expect(m.isRam(0x8000_1ffc, 4)).toBe(true);
    expect(m.isRam(0x8000_1ffc, 8)).toBe(false);
  });
});

describe('PhysicalMemory accessors', () => {
  it('allocates a frame on the first write only: reads of untouched RAM are zero and free', () => {
    const m = mem();
    expect(m.read32(RAM + 0x40)).toBe(0);
    expect(m.read64(0xf0ff_ffff_f000)).toBe(0n);
    expect(Array.from(m.read(RAM, 16))).toEqual(new Array(16).fill(0));
    expect(m.residentFrames).toBe(0);
    m.write8(0xf0ff_ffff_fff8, 0x7f);
    m.write32(RAM + 0x10, 1);
    expect(m.residentFrames).toBe(2);
    expect(m.read8(0xf0ff_ffff_fff8)).toBe(0x7f);
  });

  it('is little-endian at every width, and widths agree with each other', () => {
    const m = mem();
    m.write64(RAM + 8, 0x1122_3344_5566_7788n);
    expect(m.read8(RAM + 8)).toBe(0x88);
    expect(m.read16(RAM + 8)).toBe(0x7788);
    expect(m.read32(RAM + 8)).toBe(0x5566_7788);
    expect(m.read32(RAM + 12)).toBe(0x1122_3344);
    expect(m.read64(RAM + 8)).toBe(0x1122_3344_5566_7788n);
    m.write32(RAM, 0xdead_beef);
    expect(Array.from(m.read(RAM, 4))).toEqual([0xef, 0xbe, 0xad, 0xde]);
    m.write16(RAM + 2, 0x1_2345); // wider than 16 bits: truncated
    expect(m.read32(RAM)).toBe(0x2345_beef);
    m.write64(RAM + 16, -1n); // wrapped to 64 bits
    expect(m.read64(RAM + 16)).toBe(0xffff_ffff_ffff_ffffn);
    expect(m.read32(RAM + 20)).toBe(0xffff_ffff);
  });

  it('splits accesses that cross a frame boundary', () => {
    const m = mem();
    const edge = RAM + FRAME_SIZE - 3;
    m.write64(edge, 0x0102_0304_0506_0708n);
    expect(m.read64(edge)).toBe(0x0102_0304_0506_0708n);
    expect(m.read8(RAM + FRAME_SIZE - 1)).toBe(0x06);
    expect(m.read8(RAM + FRAME_SIZE)).toBe(0x05);
    expect(m.read32(RAM + FRAME_SIZE - 2)).toBe(0x0405_0607);
    m.write16(RAM + 2 * FRAME_SIZE - 1, 0xaabb);
    expect(m.read16(RAM + 2 * FRAME_SIZE - 1)).toBe(0xaabb);
    expect(m.residentFrames).toBe(3);
  });

  it('copies in and out in bulk across frames, and fills', () => {
    const m = mem();
    const data = Uint8Array.from({ length: 3 * FRAME_SIZE + 100 }, (_, i) => (i * 7) & 0xff);
    m.write(RAM + 50, data);
    expect(m.read(RAM + 50, data.length)).toEqual(data);
    const part = new Uint8Array(200);
    m.readInto(RAM + FRAME_SIZE - 50, part);
    expect(part).toEqual(data.subarray(FRAME_SIZE - 100, FRAME_SIZE + 100));
    m.fill(RAM + 10, 20, 0xee);
    expect(Array.from(m.read(RAM + 8, 24))).toEqual([0, 0, ...new Array(20).fill(0xee), 0, 0]);
    m.fill(RAM + FRAME_SIZE - 2, 4, 0x5a); // across a frame boundary, into the copied data
    expect(Array.from(m.read(RAM + FRAME_SIZE - 3, 6))).toEqual([data[FRAME_SIZE - 53], 0x5a, 0x5a, 0x5a, 0x5a, data[FRAME_SIZE - 48]]);
  });

  it('copies a write that fits one frame, up to its last byte, leaving the neighbours alone', () => {
    const m = mem();
    m.write(RAM + FRAME_SIZE - 4, Uint8Array.of(1, 2, 3, 4));
    m.write(RAM + 8, Uint8Array.of(9));
    expect(Array.from(m.read(RAM + FRAME_SIZE - 5, 6))).toEqual([0, 1, 2, 3, 4, 0]);
    expect(Array.from(m.read(RAM + 7, 3))).toEqual([0, 9, 0]);
    expect(m.residentFrames).toBe(1);
    expect(() => m.write(RAM - 4, Uint8Array.of(1, 2, 3, 4))).toThrow(BusError);
  });

  it('zero-filling whole frames gives them back, and they read as zero afterwards', () => {
    const m = mem();
    m.fill(RAM, 2 * FRAME_SIZE, 0x11);
    expect(m.residentFrames).toBe(2);
    expect(m.read32(RAM + FRAME_SIZE)).toBe(0x1111_1111); // the cached frame
    m.fill(RAM, 2 * FRAME_SIZE, 0);
    expect(m.residentFrames).toBe(0);
    expect(m.read32(RAM + FRAME_SIZE)).toBe(0);
    expect(m.read32(RAM)).toBe(0);
  });

  it('a frame given back and touched again (anywhere) starts zeroed, its old bytes gone', () => {
    const m = mem();
    m.fill(RAM, FRAME_SIZE, 0x11);
    m.fill(RAM, FRAME_SIZE, 0);
    m.write8(RAM + 3 * FRAME_SIZE + 1, 0x22); // a first touch elsewhere
    expect(m.residentFrames).toBe(1);
    expect(Array.from(m.read(RAM + 3 * FRAME_SIZE, 4))).toEqual([0, 0x22, 0, 0]);
    expect(m.read32(RAM + 3 * FRAME_SIZE + FRAME_SIZE - 4)).toBe(0);
    expect(m.read32(RAM)).toBe(0);
    m.write8(RAM, 1); // the first frame again
    expect(m.read32(RAM)).toBe(1);
    expect(m.read8(RAM + 3 * FRAME_SIZE + 1)).toBe(0x22);
    expect(m.residentFrames).toBe(2);
  });

  it('a whole-frame write into a given-back frame holds exactly the written bytes; a partial one is zero around them', () => {
    const m = mem();
    const data = Uint8Array.from({ length: FRAME_SIZE }, (_, i) => (i * 7 + 1) & 0xff);
    m.fill(RAM, 2 * FRAME_SIZE, 0x33);
    m.fill(RAM, 2 * FRAME_SIZE, 0); // both frames given back, their buffers kept
    m.write(RAM + 5 * FRAME_SIZE, data); // whole frame, one call
    expect(m.read(RAM + 5 * FRAME_SIZE, FRAME_SIZE)).toEqual(data);
    m.write(RAM + 7 * FRAME_SIZE + FRAME_SIZE / 2, data); // half of frame 7, half of frame 8
    expect(m.read32(RAM + 7 * FRAME_SIZE)).toBe(0);
    expect(m.read8(RAM + 7 * FRAME_SIZE + FRAME_SIZE / 2 - 1)).toBe(0);
    expect(m.read(RAM + 7 * FRAME_SIZE + FRAME_SIZE / 2, FRAME_SIZE)).toEqual(data);
    expect(m.read32(RAM + 8 * FRAME_SIZE + FRAME_SIZE - 4)).toBe(0);
  });
});

describe('PhysicalMemory outside RAM', () => {
  it('throws BusError naming the access, and a bulk access that straddles the end touches nothing', () => {
    const m = mem();
    const end = RAM + 0x10_0000;
    expect(() => m.read32(0x1000)).toThrow(BusError);
    expect(() => m.write8(end, 1)).toThrow(/bus error: write of 1 byte\(s\) at PA 0x80100000 hits no memory or device/);
    expect(() => m.read64(end - 4)).toThrow(BusError);
    let err: unknown;
    try {
      m.write(end - 2, Uint8Array.of(1, 2, 3, 4));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BusError);
    expect(err).toMatchObject({ pa: end - 2, len: 4, op: 'write' });
    expect(Array.from(m.read(end - 2, 2))).toEqual([0, 0]);
    expect(() => m.fill(end - FRAME_SIZE, 2 * FRAME_SIZE, 0)).toThrow(BusError);
    expect(() => m.readInto(RAM - 1, new Uint8Array(2))).toThrow(BusError);
    expect(m.residentFrames).toBe(0);
  });
});

describe('PhysicalMemory words32 (descriptors read and written in place)', () => {
  it('is the frame holding the address as little-endian words, shared with the byte accessors', () => {
    const mem = new PhysicalMemory();
    mem.addRegion(0x8000_0000, 0x10_0000);
    const w = mem.words32(0x8000_1008);
    mem.write32(0x8000_1008, 0x1234_5678);
    expect(w[2]).toBe(0x1234_5678);
    w[3] = 0xdead_beef;
    expect(mem.read8(0x8000_100c)).toBe(0xef);
    expect(mem.read32(0x8000_100c)).toBe(0xdead_beef);
    expect(mem.words32(0x8000_1ffc)).toBe(w);
    expect(mem.words32(0x8000_2000)).not.toBe(w);
  });

  it('throws BusError outside RAM', () => {
    const mem = new PhysicalMemory();
    mem.addRegion(0x8000_0000, 0x10_0000);
    expect(() => mem.words32(0x7fff_f000)).toThrow(BusError);
  });

  it('gives a fresh zeroed view after the frame is zeroed whole', () => {
    const mem = new PhysicalMemory();
    mem.addRegion(0x8000_0000, 0x10_0000);
    mem.words32(0x8000_0000)[5] = 7;
    mem.fill(0x8000_0000, FRAME_SIZE, 0);
    expect(mem.words32(0x8000_0000)[5]).toBe(0);
    expect(mem.read32(0x8000_0014)).toBe(0);
  });
});

describe('PhysicalMemory readWords (a command fetched in one go)', () => {
  it('gives the words read32 gives, zero for untouched RAM without making it resident, across frames too', () => {
    const m = mem();
    m.write32(RAM + 0x10, 0x1111_1111);
    m.write32(RAM + 0x1c, 0xffff_fffe);
    const out = new Uint32Array(4).fill(7);
    m.readWords(RAM + 0x10, out, 4);
    expect(Array.from(out)).toEqual([0x1111_1111, 0, 0, 0xffff_fffe]);
    out.fill(7);
    m.readWords(RAM + 0x4000, out, 4);
    expect(Array.from(out)).toEqual([0, 0, 0, 0]);
    expect(m.residentFrames).toBe(1);
    // Straddling a frame boundary, and unaligned: the same as four read32.
    m.write32(RAM + FRAME_SIZE, 0xabcd_0123);
    m.readWords(RAM + FRAME_SIZE - 8, out, 4);
    expect(Array.from(out)).toEqual([0, 0, 0xabcd_0123, 0]);
    m.readWords(RAM + FRAME_SIZE - 1, out, 2);
    expect(out[0]).toBe(m.read32(RAM + FRAME_SIZE - 1));
    expect(out[1]).toBe(m.read32(RAM + FRAME_SIZE + 3));
  });

  it('throws BusError outside RAM', () => {
    expect(() => mem().readWords(RAM - 16, new Uint32Array(4), 4)).toThrow(BusError);
  });
});
