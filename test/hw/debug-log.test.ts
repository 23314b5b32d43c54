/**
 * `DEBUG=iommu:*` logs: each hw module prints on its own namespace, and prints nothing while its
 * namespace is disabled.
 */
import { format } from 'node:util';
import createDebug from 'debug';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Machine } from '../../hw/machine.js';
import { ZeroDevice } from '../../hw/mmio.js';

const RAM = 0x8000_0000;
let lines: string[] = [];
let saved: { namespaces: string; log: typeof createDebug.log; formatArgs: typeof createDebug.formatArgs };

beforeEach(() => {
  lines = [];
  saved = { namespaces: createDebug.disable(), log: createDebug.log, formatArgs: createDebug.formatArgs };
  // Plain "namespace message" lines, whatever the terminal (no colours, dates or +Nms).
  createDebug.formatArgs = function (this: createDebug.Debugger, args: unknown[]) {
    args[0] = `${this.namespace} ${String(args[0])}`;
  };
  createDebug.log = (...args: unknown[]) => {
    lines.push(format(...args));
  };
});

afterEach(() => {
  createDebug.log = saved.log;
  createDebug.formatArgs = saved.formatArgs;
  createDebug.enable(saved.namespaces);
});

/** Run a scheduler step, then (at its virtual time) access a device and run two DMAs. */
async function exercise(): Promise<void> {
  const m = new Machine({ seed: 1 });
  m.addRam(RAM, 0x1_0000);
  m.mapMmio(0x900_0000, 0x1000, new ZeroDevice('/uart@9000000'));
  const dma = m.addPlatformMaster('/dma@c000000', [{ streamId: 0x100, iommu: null }]);
  m.scheduler.schedule(250, () => {}, 'tick');
  m.scheduler.runSyncUntilIdle();
  m.mmio.write32(0x900_0010, 0xab);
  await dma.write(RAM + 0x40, Uint8Array.of(1, 2, 3, 4));
  await dma.read(0x10, 4);
}

/** The messages captured on one namespace. */
function on(ns: string): string[] {
  return lines.filter((l) => l.startsWith(`${ns} `)).map((l) => l.slice(ns.length + 1));
}

describe('debug namespaces of the machine', () => {
  it('mmio, dma and scheduler each log on their own namespace', async () => {
    createDebug.enable('iommu:hw:*');
    await exercise();
    expect(on('iommu:hw:mmio')).toEqual(['[0.000000250] /uart@9000000 write32 +0x10 = 0xab']);
    expect(on('iommu:hw:dma')).toEqual([
      '[0.000000250] /dma@c000000: write sid 0x100 0x80000040+4: ok -> PA 0x80000040',
      '[0.000000250] /dma@c000000: read sid 0x100 0x10+4: bus-error: read of 4 byte(s) at PA 0x10 hits no memory or device',
    ]);
    expect(on('iommu:hw:scheduler')).toEqual(['[0.000000250] step 1: tick']);
  });

  it('a namespace left out prints nothing', async () => {
    createDebug.enable('iommu:hw:dma');
    await exercise();
    expect(on('iommu:hw:mmio')).toEqual([]);
    expect(on('iommu:hw:scheduler')).toEqual([]);
    expect(on('iommu:hw:dma')).toHaveLength(2);
  });
});
