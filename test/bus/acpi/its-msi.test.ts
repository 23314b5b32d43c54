/**
 * SMMUv3 MSIs through a GICv3 ITS on ACPI machines: the IORT SMMUv3 node's DeviceID mapping names
 * the ITS group and the DeviceID; the kernel maps the SMMU's vectors through the ITS command queue
 * (MAPC, MAPD, MAPTI, SYNC) and the SMMU's event MSI, carrying that DeviceID on the bus, raises the
 * LPI its EventID was mapped to, whose handler reports the event.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readAcpiDir } from '../../../cli/acpi.js';
import { findArmSmmuV3 } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { GicIts } from '../../../hw/gic-its.js';
import { bootFromAcpi, run } from '../../../scenarios/lib/lab.js';
import { qemuTables } from './acpi-fixture.js';

const FIXTURES = join(__dirname, '../../fixtures/acpi');

describe('SMMUv3 MSIs through the ITS (ACPI)', () => {
  it('RD-N1-Edge: the SMMU signals its event queue as DeviceID 0x10000, EventID 0, and the LPI mapped to it fires its handler', async () => {
    const tables = readAcpiDir(join(FIXTURES, 'rdn1edge'));
    const { machine, kernel } = await bootFromAcpi(tables, { ram: [{ base: 0x8000_0000, size: 0x7f00_0000 }] }, { seed: 1 });
    const its = machine.msiFrames.find((f): f is GicIts => f instanceof GicIts)!;
    expect(its.name).toBe('MADT:its@0x30040000');
    // The bus gives the SMMU's writes the IORT DeviceID.
    expect(its.deviceIdOf('IORT:smmuv3@0x48')).toBe(0x1_0000);
    // MAPC, SYNC, then MAPD, a MAPTI per vector (evtq, gerror, priq), SYNC: all consumed, none in error.
    expect(its.stats.commands).toBe(7);
    expect(its.commandErrors).toEqual([]);
    const smmu = findArmSmmuV3(kernel.core, 'IORT:smmuv3@0x48');
    expect(smmu.msiVectors.map((v) => [v.data, v.address, v.irq.specifier[1] + 8192])).toEqual([
      [0, 0x3004_0000 + 0x10040, 8192],
      [1, 0x3004_0000 + 0x10040, 8193],
      [2, 0x3004_0000 + 0x10040, 8194],
    ]);
    expect(its.lpiOf(0x1_0000, 0)).toBe(8192);
    // A transaction from a StreamID nothing configured: the SMMU reports an event, by MSI.
    const gic = machine.gic('MADT:gicd@0x30000000');
    const before = smmu.events.length;
    const { port } = machine.portFor('IORT:smmuv3@0x48', { name: 'stray', streamId: 0x42, cells: [0x42], kind: 'platform', canStall: false, pasidBits: 0 });
    const done = new Promise((resolve) => port.submit({ master: 'stray', streamId: 0x42, ssid: 0, ssidValid: false, addr: 0x1000, len: 4, write: false, exec: false, priv: false }, resolve));
    await run(machine, done, 'stray DMA');
    await machine.scheduler.runFor(1_000_000);
    expect(its.translated).toEqual([{ deviceId: 0x1_0000, eventId: 0, lpi: 8192 }]);
    expect(gic.statsOf(8192)).toMatchObject({ raised: 1, delivered: 1, unhandled: 0 });
    expect(smmu.events.length).toBe(before + 1);
    expect(smmu.events[before]).toMatchObject({ sid: 0x42 });
  });

  it('N1SDP: each SMMU maps its vectors as DeviceID 0 to its own ITS group (both groups list ITS 1, as published)', async () => {
    const tables = readAcpiDir(join(FIXTURES, 'n1sdp'));
    const { machine, kernel } = await bootFromAcpi(tables, { ram: [{ base: 0x8000_0000, size: 0x7f00_0000 }] }, { seed: 1 });
    const its = machine.msiFrames.filter((f): f is GicIts => f instanceof GicIts);
    expect(its.map((i) => i.name)).toEqual(['MADT:its@0x30040000', 'MADT:its@0x30060000', 'MADT:its@0x30080000', 'MADT:its@0x300a0000']);
    const its1 = its[1];
    expect(its1.deviceIdOf('IORT:smmuv3@0x100')).toBe(0);
    expect(its1.deviceIdOf('IORT:smmuv3@0x16c')).toBe(0);
    // Both SMMUs share DeviceID 0 on ITS 1: the second reuses the ITT (as Linux does) and takes EventIDs 3-5.
    const [a, b] = ['IORT:smmuv3@0x100', 'IORT:smmuv3@0x16c'].map((p) => findArmSmmuV3(kernel.core, p));
    expect(a.msiVectors.map((v) => v.data)).toEqual([0, 1, 2]);
    expect(b.msiVectors.map((v) => v.data)).toEqual([3, 4, 5]);
    expect(new Set([...a.msiVectors, ...b.msiVectors].map((v) => its1.lpiOf(0, v.data))).size).toBe(6);
    expect(its[0].stats.commands).toBe(0);
  });

  it('QEMU virt (all four GSIVs set): no DeviceID mapping is valid, so the SMMU keeps its wired interrupts', async () => {
    const { tables, memory } = qemuTables({ revision: 3 });
    const { machine, kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
    const its = machine.msiFrames.find((f): f is GicIts => f instanceof GicIts)!;
    expect(its.stats.commands).toBe(0);
    const smmu = findArmSmmuV3(kernel.core, [...machine.iommus.keys()][0]);
    expect(smmu.msiVectors).toEqual([]);
  });
});

describe('ITS model through MMIO', () => {
  it('commands from the queue map (DeviceID, EventID) to an LPI; a write with no DeviceID or an unmapped event is a translation error; unknown commands are command errors', async () => {
    const { tables, memory } = qemuTables({ revision: 3 });
    const { machine } = await bootFromAcpi(tables, memory, { seed: 1 });
    const its = machine.msiFrames.find((f): f is GicIts => f instanceof GicIts)!;
    const gic = machine.gic([...machine.interruptControllers.keys()][0]);
    const q = 0x4800_0000;
    const cmds: bigint[][] = [
      [0x09n, 0n, (1n << 63n) | 3n, 0n], // MAPC ICID 3
      [0x08n | (0x77n << 32n), 1n, (1n << 63n) | 0x4801_0000n, 0n], // MAPD DeviceID 0x77, 2 EventID bits
      [0x0an | (0x77n << 32n), 2n | (9000n << 32n), 3n, 0n], // MAPTI EventID 2 → LPI 9000, ICID 3
      [0x0an | (0x77n << 32n), 5n | (9001n << 32n), 3n, 0n], // EventID 5: beyond 2 bits, a command error
      [0x01n, 0n, 0n, 0n], // MOVI: not supported
      [0x03n | (0x77n << 32n), 2n, 0n, 0n], // INT: raise it now
    ];
    const b = new Uint8Array(cmds.length * 32);
    const dv = new DataView(b.buffer);
    cmds.forEach((c, i) => c.forEach((w, j) => dv.setBigUint64(i * 32 + j * 8, w, true)));
    machine.memory.write(q, b);
    const base = its.base;
    machine.mmio.write64(base + 0x80, (1n << 63n) | BigInt(q)); // CBASER: 1 page
    machine.mmio.write32(base + 0x0, 1); // CTLR.Enabled
    machine.mmio.write64(base + 0x88, BigInt(cmds.length * 32)); // CWRITER
    expect(machine.mmio.read32(base + 0x90)).toBe(0); // not consumed inside the write
    machine.scheduler.runSyncUntilIdle();
    expect(machine.mmio.read32(base + 0x90)).toBe(cmds.length * 32);
    expect(its.commandErrors).toEqual([expect.stringMatching(/EventID 5 beyond the 2 bits/), 'command 0x1 is not supported']);
    expect(its.lpiOf(0x77, 2)).toBe(9000);
    expect(gic.statsOf(9000).raised).toBe(1);
    // A master with a DeviceID: translated. A CPU store (no DeviceID): dropped.
    its.setDeviceId('dev77', 0x77);
    its.dmaWrite32(0x10040, 2, 'dev77');
    machine.mmio.write32(base + 0x10040, 2);
    its.dmaWrite32(0x10040, 3, 'dev77');
    expect(its.translated).toEqual([{ deviceId: 0x77, eventId: 2, lpi: 9000 }]);
    expect(its.stats.translationErrors).toBe(2);
    expect(machine.mmio.read64(base + 0x8) & 1n).toBe(1n); // GITS_TYPER.Physical
  });
});
