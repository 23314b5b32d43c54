/**
 * GICv3 ITS (Interrupt Translation Service): what turns an MSI write (DeviceID, EventID) into an
 * LPI. GICv3/v4 Architecture Specification (IHI 0069), chapter 5 (the ITS), 6.3 (commands) and
 * 12.19 (the GITS_* registers).
 *
 * Supported:
 * - GITS_CTLR.Enabled (Quiescent reads 1), GITS_IIDR, GITS_TYPER (physical LPIs, 8-byte ITT entries,
 *   16 EventID bits, 20 DeviceID bits, 255 collections held in hardware: HCC, PTA = 0);
 * - the command queue: GITS_CBASER (Valid, Physical_Address, Size in 4 KiB pages), GITS_CWRITER,
 *   GITS_CREADR. A CWRITER write schedules a step that runs the commands between CREADR and CWRITER
 *   from memory; the step advances CREADR;
 * - commands MAPD, MAPC, MAPTI, MAPI, DISCARD, INT, CLEAR, SYNC, INV, INVALL. MOVI, MOVALL and the
 *   GICv4 commands are command errors: the command is skipped, counted and remembered in
 *   `commandErrors` (the queue does not stall, and GITS_CREADR.Stalled stays 0);
 * - GITS_TRANSLATER: a 32-bit write of an EventID. The DeviceID is the writer's: the machine records
 *   each master's DeviceID (`setDeviceId`, from firmware's `msi-parent` specifier, the IORT's
 *   DeviceID mapping) as the bus sideband carries it in hardware. A write that reaches the ITS
 *   through the CPU (no master) or from a master with no DeviceID is a translation error (counted).
 *   A translated (DeviceID, EventID) with a mapped collection raises that LPI on the parent GIC.
 *
 * Not modelled: the device, collection and ITT tables in memory (the mappings are kept in the
 * model; GITS_BASER<n> read as Type 0, unimplemented, so software allocates none and the ITT address
 * of MAPD is only recorded), the LPI configuration and pending tables (every mapped LPI is enabled),
 * GITS_CREADR.Stalled, redistributor targets (RDbase is recorded; every LPI goes to the GIC),
 * GICv4 virtual LPIs. Unknown offsets read as zero and ignore writes.
 */
import createDebug from 'debug';
import { GIC_LPI_BASE, GIC_LPI_COUNT, GITS_TRANSLATER, type GicController } from './gic.js';
import type { PhysicalMemory } from './memory.js';
import type { MmioDevice } from './mmio.js';
import type { Scheduler } from './scheduler.js';
import type { Trace } from './trace.js';
import { vtime } from './vtime.js';

const log = createDebug('iommu:hw:its');

// GITS_* register offsets (IHI 0069, 12.19).
export const GITS_CTLR = 0x0000;
export const GITS_IIDR = 0x0004;
export const GITS_TYPER = 0x0008;
export const GITS_CBASER = 0x0080;
export const GITS_CWRITER = 0x0088;
export const GITS_CREADR = 0x0090;
export const GITS_BASER0 = 0x0100;

export const GITS_CTLR_ENABLED = 1 << 0;
export const GITS_CTLR_QUIESCENT = 1 << 31;
/** GITS_TYPER: Physical, ITT_entry_size 8 (7 + 1), IDbits 16 (15 + 1), Devbits 20 (19 + 1), HCC 255. */
export const GITS_TYPER_VALUE = (1n << 0n) | (7n << 4n) | (15n << 8n) | (19n << 13n) | (255n << 24n);
export const GITS_CBASER_VALID = 1n << 63n;

// Command numbers (IHI 0069, 6.3).
export const GITS_CMD_MOVI = 0x01;
export const GITS_CMD_INT = 0x03;
export const GITS_CMD_CLEAR = 0x04;
export const GITS_CMD_SYNC = 0x05;
export const GITS_CMD_MAPD = 0x08;
export const GITS_CMD_MAPC = 0x09;
export const GITS_CMD_MAPTI = 0x0a;
export const GITS_CMD_MAPI = 0x0b;
export const GITS_CMD_INV = 0x0c;
export const GITS_CMD_INVALL = 0x0d;
export const GITS_CMD_MOVALL = 0x0e;
export const GITS_CMD_DISCARD = 0x0f;
export const GITS_CMD_SIZE = 32;


interface ItsDevice {
  ittAddr: number;
  /** EventID bits (Size + 1). */
  idBits: number;
  events: Map<number, { lpi: number; icid: number }>;
}

export interface ItsStats {
  commands: number;
  translations: number;
  translationErrors: number;
}

export class GicIts implements MmioDevice {
  private ctlr = 0;
  private cbaser = 0n;
  private cwriter = 0;
  private creadr = 0;
  private stepPending = false;
  private readonly devices = new Map<number, ItsDevice>();
  private readonly collections = new Map<number, number>();
  private readonly deviceIds = new Map<string, number>();
  readonly stats: ItsStats = { commands: 0, translations: 0, translationErrors: 0 };
  /** Command errors, oldest first (bounded). */
  readonly commandErrors: string[] = [];
  /** Translations done, oldest first (bounded): what a test checks. */
  readonly translated: { deviceId: number; eventId: number; lpi: number }[] = [];

  constructor(
    readonly name: string,
    readonly base: number,
    private readonly gic: GicController,
    private readonly memory: PhysicalMemory,
    private readonly scheduler: Scheduler,
    private readonly trace: Trace,
    private readonly stepNs = 100,
  ) {}

  get doorbell(): number {
    return this.base + GITS_TRANSLATER;
  }

  /** The DeviceID the bus gives writes from `master` (firmware's msi-parent specifier). */
  setDeviceId(master: string, deviceId: number): void {
    this.deviceIds.set(master, deviceId >>> 0);
  }

  deviceIdOf(master: string): number | undefined {
    return this.deviceIds.get(master);
  }

  /** The LPI (DeviceID, EventID) is mapped to, or null. */
  lpiOf(deviceId: number, eventId: number): number | null {
    return this.devices.get(deviceId)?.events.get(eventId)?.lpi ?? null;
  }

  registerName(offset: number): string | null {
    const names: Record<number, string> = {
      [GITS_CTLR]: 'GITS_CTLR',
      [GITS_IIDR]: 'GITS_IIDR',
      [GITS_TYPER]: 'GITS_TYPER',
      [GITS_CBASER]: 'GITS_CBASER',
      [GITS_CWRITER]: 'GITS_CWRITER',
      [GITS_CREADR]: 'GITS_CREADR',
      [GITS_TRANSLATER]: 'GITS_TRANSLATER',
    };
    return names[offset & ~7] ?? names[offset] ?? null;
  }

  private reg64(offset: number): bigint | null {
    switch (offset) {
      case GITS_TYPER:
        return GITS_TYPER_VALUE;
      case GITS_CBASER:
        return this.cbaser;
      case GITS_CWRITER:
        return BigInt(this.cwriter);
      case GITS_CREADR:
        return BigInt(this.creadr);
      default:
        return offset >= GITS_BASER0 && offset < GITS_BASER0 + 0x40 ? 0n : null;
    }
  }

  read64(offset: number): bigint {
    return this.reg64(offset & ~7) ?? 0n;
  }

  read32(offset: number): number {
    if (offset === GITS_CTLR) return (this.ctlr | GITS_CTLR_QUIESCENT) >>> 0;
    if (offset === GITS_IIDR) return 0x0100_043b; // Arm, revision 1
    const v = this.reg64(offset & ~7);
    if (v === null) return 0;
    return Number((offset & 4 ? v >> 32n : v) & 0xffff_ffffn);
  }

  peek32(offset: number): number {
    return this.read32(offset);
  }

  write64(offset: number, value: bigint): void {
    switch (offset) {
      case GITS_CBASER:
        // Writable only while the ITS is disabled; it resets CREADR.
        if (this.ctlr & GITS_CTLR_ENABLED) return;
        this.cbaser = value & (GITS_CBASER_VALID | 0x000f_ffff_ffff_f000n | 0xffn);
        this.creadr = 0;
        return;
      case GITS_CWRITER:
        this.cwriter = Number(value & 0xf_ffe0n);
        this.kick();
        return;
      default:
        this.write32(offset, Number(value & 0xffff_ffffn));
    }
  }

  write32(offset: number, value: number): void {
    switch (offset) {
      case GITS_CTLR:
        this.ctlr = value & GITS_CTLR_ENABLED;
        this.kick();
        return;
      case GITS_CBASER:
        this.write64(GITS_CBASER, (this.cbaser & ~0xffff_ffffn) | BigInt(value >>> 0));
        return;
      case GITS_CBASER + 4:
        this.write64(GITS_CBASER, (this.cbaser & 0xffff_ffffn) | (BigInt(value >>> 0) << 32n));
        return;
      case GITS_CWRITER:
        this.write64(GITS_CWRITER, BigInt(value >>> 0));
        return;
      case GITS_TRANSLATER:
        // A CPU store carries no DeviceID.
        this.translate(undefined, value >>> 0);
        return;
      default:
        if (log.enabled) log('%s %s: write 0x%s to offset 0x%s ignored', vtime(this.scheduler.now), this.name, value.toString(16), offset.toString(16));
    }
  }

  /** An MSI write from a master: the bus tells the ITS who wrote it. */
  dmaWrite32(offset: number, value: number, master: string): void {
    if (offset !== GITS_TRANSLATER) {
      this.write32(offset, value);
      return;
    }
    this.translate(this.deviceIds.get(master), value >>> 0);
  }

  private translate(deviceId: number | undefined, eventId: number): void {
    if (this.trace.active) this.trace.emit({ kind: 'msi', time: this.scheduler.now, track: this.name, address: this.doorbell, data: eventId });
    const fail = (why: string): void => {
      this.stats.translationErrors++;
      if (log.enabled) log('%s %s: EventID %d from DeviceID %s dropped: %s', vtime(this.scheduler.now), this.name, eventId, deviceId ?? '-', why);
    };
    if (!(this.ctlr & GITS_CTLR_ENABLED)) return fail('ITS disabled');
    if (deviceId === undefined) return fail('the write carries no DeviceID');
    const dev = this.devices.get(deviceId);
    if (!dev) return fail('DeviceID not mapped (MAPD)');
    const ev = dev.events.get(eventId);
    if (!ev) return fail('EventID not mapped (MAPTI)');
    if (!this.collections.has(ev.icid)) return fail(`collection ${ev.icid} not mapped (MAPC)`);
    this.stats.translations++;
    this.translated.push({ deviceId, eventId, lpi: ev.lpi });
    if (this.translated.length > 1024) this.translated.shift();
    this.gic.raiseLpi(ev.lpi);
  }

  private kick(): void {
    if (this.stepPending || !(this.ctlr & GITS_CTLR_ENABLED) || !(this.cbaser & GITS_CBASER_VALID) || this.creadr === this.cwriter) return;
    this.stepPending = true;
    this.scheduler.schedule(this.stepNs, () => this.step(), `${this.name} command queue`);
  }

  private step(): void {
    this.stepPending = false;
    const size = (Number(this.cbaser & 0xffn) + 1) * 0x1000;
    const base = Number(this.cbaser & 0x000f_ffff_ffff_f000n);
    let guard = size / GITS_CMD_SIZE;
    while (this.creadr !== this.cwriter && guard-- > 0 && this.ctlr & GITS_CTLR_ENABLED) {
      if (this.creadr >= size) {
        this.creadr = 0;
        continue;
      }
      this.command(base + this.creadr);
      this.creadr = (this.creadr + GITS_CMD_SIZE) % size;
    }
  }

  private commandError(what: string): void {
    this.commandErrors.push(what);
    if (this.commandErrors.length > 256) this.commandErrors.shift();
    if (log.enabled) log('%s %s: command error: %s', vtime(this.scheduler.now), this.name, what);
  }

  private command(pa: number): void {
    this.stats.commands++;
    let dw: bigint[];
    try {
      const b = this.memory.read(pa, GITS_CMD_SIZE);
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      dw = [0, 1, 2, 3].map((i) => v.getBigUint64(i * 8, true));
    } catch {
      this.commandError(`command at PA 0x${pa.toString(16)} is not in memory`);
      return;
    }
    const cmd = Number(dw[0] & 0xffn);
    const deviceId = Number(dw[0] >> 32n);
    const eventId = Number(dw[1] & 0xffff_ffffn);
    const icid = Number(dw[2] & 0xffffn);
    switch (cmd) {
      case GITS_CMD_MAPD:
        if (dw[2] >> 63n) this.devices.set(deviceId, { ittAddr: Number(dw[2] & 0x000f_ffff_ffff_ff00n), idBits: Number(dw[1] & 0x1fn) + 1, events: new Map() });
        else this.devices.delete(deviceId);
        return;
      case GITS_CMD_MAPC:
        if (dw[2] >> 63n) this.collections.set(icid, Number((dw[2] >> 16n) & 0x7_ffff_ffffn));
        else this.collections.delete(icid);
        return;
      case GITS_CMD_MAPTI:
      case GITS_CMD_MAPI: {
        const dev = this.devices.get(deviceId);
        const lpi = cmd === GITS_CMD_MAPI ? eventId : Number(dw[1] >> 32n);
        if (!dev) return this.commandError(`MAPTI: DeviceID 0x${deviceId.toString(16)} not mapped`);
        if (eventId >= 2 ** dev.idBits) return this.commandError(`MAPTI: EventID ${eventId} beyond the ${dev.idBits} bits MAPD gave DeviceID 0x${deviceId.toString(16)}`);
        if (lpi < GIC_LPI_BASE || lpi >= GIC_LPI_BASE + GIC_LPI_COUNT) return this.commandError(`MAPTI: pINTID ${lpi} is not an LPI of this ITS`);
        dev.events.set(eventId, { lpi, icid });
        return;
      }
      case GITS_CMD_DISCARD:
        this.devices.get(deviceId)?.events.delete(eventId);
        return;
      case GITS_CMD_INT: {
        const ev = this.devices.get(deviceId)?.events.get(eventId);
        if (!ev) return this.commandError(`INT: (0x${deviceId.toString(16)}, ${eventId}) not mapped`);
        this.gic.raiseLpi(ev.lpi);
        return;
      }
      case GITS_CMD_CLEAR:
      case GITS_CMD_SYNC:
      case GITS_CMD_INV:
      case GITS_CMD_INVALL:
        return;
      default:
        this.commandError(`command 0x${cmd.toString(16)} is not supported`);
    }
  }
}
