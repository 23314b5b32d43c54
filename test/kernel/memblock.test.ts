import { describe, expect, it } from 'vitest';
import { reg, ranges, type DtBuilder } from '../../bus/of/dt-builder.js';
import { board } from '../lib/board.js';
import { scanFirmwareMemory } from '../../kernel/memblock.js';

function tree(children: (b: DtBuilder) => void) {
  const { b } = board();
  b.node('/reserved-memory', { '#address-cells': 2, '#size-cells': 2, ranges: ranges() });
  children(b);
  b.memreserve(0x8000_0000, 0x1000);
  return b.build();
}

describe('early memory scan', () => {
  it('collects RAM, the reservation map, static and dynamic reserved-memory', () => {
    const m = scanFirmwareMemory(
      tree((b) => {
        b.node('/reserved-memory/fw@81000000', { reg: reg([0x8100_0000, 0x10_0000]), 'no-map': true });
        b.node('/reserved-memory/cma', { compatible: 'shared-dma-pool', size: [0, 0x40_0000], alignment: [0, 0x40_0000], reusable: true });
      }),
    );
    expect(m.memory).toEqual([{ base: 0x8000_0000, size: 0x1000_0000 }]);
    expect(m.reserved).toEqual([
      { base: 0x8000_0000, size: 0x1000, name: 'memreserve[0]' },
      { base: 0x8100_0000, size: 0x10_0000, name: '/reserved-memory/fw@81000000' },
      // placed as high as it fits, aligned
      { base: 0x8fc0_0000, size: 0x40_0000, name: '/reserved-memory/cma' },
    ]);
    expect(m.unplaced).toEqual([]);
  });

  it('a dynamic reservation with no room is reported, not fatal (as Linux logs and boots on)', () => {
    const m = scanFirmwareMemory(
      tree((b) => {
        b.node('/reserved-memory/cma', { size: [0, 0x2000_0000] });
      }),
    );
    expect(m.unplaced).toEqual([{ node: '/reserved-memory/cma', size: 0x2000_0000 }]);
    expect(m.reserved.map((r) => r.name)).toEqual(['memreserve[0]']);
  });

  it('honours alloc-ranges', () => {
    const m = scanFirmwareMemory(
      tree((b) => {
        b.node('/reserved-memory/cma', { size: [0, 0x10_0000], 'alloc-ranges': [0, 0x8200_0000, 0, 0x20_0000] });
      }),
    );
    expect(m.reserved.at(-1)).toEqual({ base: 0x8210_0000, size: 0x10_0000, name: '/reserved-memory/cma' });
  });
});

describe('a crash kernel\'s /chosen', () => {
  it('linux,usable-memory-range caps RAM; linux,elfcorehdr and the kernel image are reserved', () => {
    const m = scanFirmwareMemory(
      tree((b) => {
        b.node('/chosen', { 'linux,usable-memory-range': reg([0x8800_0000, 0x400_0000]), 'linux,elfcorehdr': reg([0x8820_0000, 0x100]) });
      }),
    );
    expect(m.memory).toEqual([{ base: 0x8800_0000, size: 0x400_0000 }]);
    expect(m.usable).toEqual({ base: 0x8800_0000, size: 0x400_0000 });
    expect(m.elfcorehdr).toEqual({ base: 0x8820_0000, size: 0x100 });
    expect(m.reserved).toEqual([
      { base: 0x8800_0000, size: 0x20_0000, name: 'kernel image' },
      { base: 0x8000_0000, size: 0x1000, name: 'memreserve[0]' },
      { base: 0x8820_0000, size: 0x1000, name: 'elfcorehdr' },
    ]);
  });

  it('a usable range over no RAM, or with the wrong number of cells, is a firmware error naming /chosen', () => {
    expect(() => scanFirmwareMemory(tree((b) => b.node('/chosen', { 'linux,usable-memory-range': reg([0x1000_0000, 0x1000]) })))).toThrow(
      /linux,usable-memory-range \[0x10000000, \+0x1000\) covers no RAM/,
    );
    expect(() => scanFirmwareMemory(tree((b) => b.node('/chosen', { 'linux,elfcorehdr': [0, 0x8820_0000, 0x100] })))).toThrow(
      /"linux,elfcorehdr" has 3 cells, expected 4/,
    );
  });
});
