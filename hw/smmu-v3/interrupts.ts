/**
 * SMMUv3 interrupts and global errors: IRQ_CTRL with its IRQ_CTRLACK handshake, the GERROR/GERRORN
 * toggle protocol, the *_IRQ_CFG0/1/2 MSI configuration, and delivery either as an MSI (a 32-bit
 * write of *_IRQ_CFG1 to *_IRQ_CFG0.ADDR through the downstream port) or on a named wired line.
 *
 * Supports: the Event queue, PRI queue and GERROR interrupts (IRQ_CTRL-gated), the CMD_SYNC
 * completion interrupt (the MSI the command describes or, when MSIs are not implemented or its
 * MSIAddr is 0, the wired `cmdq-sync` line: one or the other, never both), a `combined` wired
 * output pulsed with every wired interrupt, MSI write aborts reported as GERROR.MSI_*_ABT_ERR,
 * IRQ_CFG registers ignoring writes while their interrupt is enabled.
 * Does not support: SEV (CMD_SYNC CS=SEV is counted only; there is no PE model), MSI memory
 * attributes (CFG2 is stored, not used).
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { DmaDone, DmaPort, DmaRequest } from '../dma.js';
import type { Scheduler } from '../scheduler.js';
import type { Trace } from '../trace.js';
import { join64 } from '../bitfield.js';
import type { ResolvedOptions } from './options.js';
import {
  GERROR_IMPLEMENTED,
  GERROR_MSI_CMDQ_ABT_ERR,
  GERROR_MSI_EVENTQ_ABT_ERR,
  GERROR_MSI_GERROR_ABT_ERR,
  GERROR_MSI_PRIQ_ABT_ERR,
  IRQ_CFG0_ADDR_HI_MASK,
  IRQ_CFG0_ADDR_LO_MASK,
  IRQ_CFG2_IMPLEMENTED,
  IRQ_CTRL_EVENTQ_IRQEN,
  IRQ_CTRL_GERROR_IRQEN,
  IRQ_CTRL_PRIQ_IRQEN,
  PRIQ_IRQ_CFG2_LO,
} from './regs.js';

const log = createDebug('iommu:hw:smmu-v3:irq');

/** The wired interrupt outputs of an SMMUv3. */
export type SmmuV3IrqName = 'eventq' | 'priq' | 'cmdq-sync' | 'gerror' | 'combined';
export const SMMU_V3_IRQ_NAMES: readonly SmmuV3IrqName[] = ['eventq', 'priq', 'cmdq-sync', 'gerror', 'combined'];

/** Something that can be raised: an IrqLine from the interrupt controller, or a test's callback. */
export interface IrqOutput {
  raise(): void;
}

/** The interrupts with an IRQ_CTRL enable and an MSI configuration. */
export type MsiSource = 'gerror' | 'eventq' | 'priq';

export class MsiConfig {
  cfg0Lo = 0;
  cfg0Hi = 0;
  cfg1 = 0;
  cfg2 = 0;

  get address(): number {
    return join64(this.cfg0Lo & IRQ_CFG0_ADDR_LO_MASK, this.cfg0Hi & IRQ_CFG0_ADDR_HI_MASK);
  }
}

/** A reusable MSI write: the request, a view on its 4 data bytes, and its completion. */
interface MsiWrite {
  readonly req: DmaRequest;
  readonly view: DataView;
  readonly done: DmaDone;
}

export interface InterruptStats {
  /** Wired interrupts raised, per output. */
  wired: Record<SmmuV3IrqName, number>;
  /** MSIs sent, per source. */
  msi: Record<MsiSource | 'cmdq-sync', number>;
  /** CMD_SYNC completions signalled with CS = SEV. */
  sev: number;
}

export class Interrupts {
  irqCtrl = 0;
  irqCtrlAck = 0;
  gerror = 0;
  gerrorn = 0;
  readonly cfg: Record<MsiSource, MsiConfig> = { gerror: new MsiConfig(), eventq: new MsiConfig(), priq: new MsiConfig() };
  readonly stats: InterruptStats = {
    wired: { eventq: 0, priq: 0, 'cmdq-sync': 0, gerror: 0, combined: 0 },
    msi: { gerror: 0, eventq: 0, priq: 0, 'cmdq-sync': 0 },
    sev: 0,
  };
  private readonly lines: Partial<Record<SmmuV3IrqName, IrqOutput>> = {};
  /** One reusable MSI write per source (see `msi`). */
  private readonly msiWrites: Record<MsiSource | 'cmdq-sync', MsiWrite>;
  private ackEvent: { cancel(): void } | null = null;
  /** Called when software acknowledges global errors (bits whose GERRORN now equals GERROR). */
  onGerrorAck: (acked: number) => void = () => {};

  constructor(
    private readonly opts: ResolvedOptions,
    private readonly scheduler: Scheduler,
    private readonly downstream: DmaPort,
    private readonly trace: Trace | null,
  ) {
    const write = (abortBit: number): MsiWrite => {
      const data = new Uint8Array(4);
      const req: DmaRequest = { master: opts.name, streamId: 0, ssid: 0, ssidValid: false, addr: 0, len: 4, write: true, exec: false, priv: true, data };
      const done: DmaDone = (c) => {
        if (c.status === 'ok') return;
        if (log.enabled) log('%s %s: MSI write to 0x%s aborted (%s)', vtime(this.scheduler.now), opts.name, req.addr.toString(16), c.detail ?? c.status);
        this.activateError(abortBit);
      };
      return { req, view: new DataView(data.buffer), done };
    };
    this.msiWrites = {
      gerror: write(GERROR_MSI_GERROR_ABT_ERR.mask),
      eventq: write(GERROR_MSI_EVENTQ_ABT_ERR.mask),
      priq: write(GERROR_MSI_PRIQ_ABT_ERR.mask),
      'cmdq-sync': write(GERROR_MSI_CMDQ_ABT_ERR.mask),
    };
  }

  /** Connect (or replace) a wired output. */
  connect(name: SmmuV3IrqName, out: IrqOutput | null): void {
    if (!SMMU_V3_IRQ_NAMES.includes(name)) throw new RangeError(`SMMUv3 ${this.opts.name}: no interrupt output named "${name}"`);
    if (out === null) delete this.lines[name];
    else this.lines[name] = out;
  }

  // ---- IRQ_CTRL --------------------------------------------------------------------------

  writeIrqCtrl(v: number): void {
    this.irqCtrl = v & 0x7;
    this.ackEvent?.cancel();
    this.ackEvent = this.scheduler.schedule(
      this.opts.timing.regAckNs,
      () => {
        this.ackEvent = null;
        this.irqCtrlAck = this.irqCtrl;
      },
      `${this.opts.name} IRQ_CTRLACK`,
    );
  }

  private enableBit(src: MsiSource): number {
    return src === 'gerror' ? IRQ_CTRL_GERROR_IRQEN.mask : src === 'eventq' ? IRQ_CTRL_EVENTQ_IRQEN.mask : IRQ_CTRL_PRIQ_IRQEN.mask;
  }

  /** *_IRQ_CFGn are guarded by the interrupt's enable: writes while enabled are ignored. */
  cfgWritable(src: MsiSource): boolean {
    const b = this.enableBit(src);
    return ((this.irqCtrl | this.irqCtrlAck) & b) === 0;
  }

  writeCfg(src: MsiSource, which: 'cfg0Lo' | 'cfg0Hi' | 'cfg1' | 'cfg2', v: number): boolean {
    if (!this.cfgWritable(src)) {
      if (log.enabled) log('%s %s: %s_IRQ_CFG write ignored while its IRQEN is set', vtime(this.scheduler.now), this.opts.name, src.toUpperCase());
      return false;
    }
    const c = this.cfg[src];
    if (which === 'cfg0Lo') c.cfg0Lo = v & IRQ_CFG0_ADDR_LO_MASK;
    else if (which === 'cfg0Hi') c.cfg0Hi = v & IRQ_CFG0_ADDR_HI_MASK;
    else if (which === 'cfg1') c.cfg1 = v >>> 0;
    else c.cfg2 = v & (IRQ_CFG2_IMPLEMENTED | (src === 'priq' ? PRIQ_IRQ_CFG2_LO.mask : 0));
    return true;
  }

  // ---- raising ---------------------------------------------------------------------------

  /** Signal an IRQ_CTRL-gated interrupt (Event queue, PRI queue, global error). */
  raise(src: MsiSource): void {
    if ((this.irqCtrlAck & this.enableBit(src)) === 0) return;
    const c = this.cfg[src];
    if (this.opts.msi && c.address !== 0) {
      this.stats.msi[src]++;
      this.msi(src, c.address, c.cfg1);
      return;
    }
    this.wired(src);
  }

  /** Pulse a wired output (and the combined one). */
  wired(name: Exclude<SmmuV3IrqName, 'combined'>): void {
    this.stats.wired[name]++;
    if (this.trace?.active) this.trace.emit({ kind: 'irq', time: this.scheduler.now, track: this.opts.name, line: name });
    this.lines[name]?.raise();
    this.stats.wired.combined++;
    this.lines.combined?.raise();
  }

  /**
   * Send an MSI for `src`: a 32-bit write of `data` to `address` through the downstream port. An abort
   * sets the source's GERROR.MSI_*_ABT_ERR. Allocation-free (every CMD_SYNC with CS=IRQ sends one):
   * posted when it targets RAM, else each source reuses one request, whose bytes the downstream reads
   * during `submit`.
   */
  msi(src: MsiSource | 'cmdq-sync', address: number, data: number): void {
    if (this.trace?.active) this.trace.emit({ kind: 'msi', time: this.scheduler.now, track: this.opts.name, address, data: data >>> 0 });
    const w = this.msiWrites[src];
    // An MSI into memory (a CMD_SYNC's completion word) is posted without a request or completion
    // object; one to a device (a GIC doorbell) is submitted.
    const posted = this.downstream.postRam32?.(this.opts.name, address, data >>> 0) ?? null;
    if (posted !== null) {
      w.done(posted);
      return;
    }
    w.req.addr = address;
    w.view.setUint32(0, data >>> 0, true);
    this.downstream.submit(w.req, w.done);
  }

  // ---- GERROR ----------------------------------------------------------------------------

  /** Global errors currently active (GERROR ^ GERRORN). */
  get activeErrors(): number {
    return (this.gerror ^ this.gerrorn) & GERROR_IMPLEMENTED;
  }

  isActive(bit: number): boolean {
    return (this.activeErrors & bit) !== 0;
  }

  /** Make an error active by toggling its GERROR bit (no effect if it already is) and interrupt. */
  activateError(bit: number): void {
    if (this.isActive(bit)) return;
    this.gerror = (this.gerror ^ bit) >>> 0;
    if (log.enabled) log('%s %s: GERROR 0x%s active', vtime(this.scheduler.now), this.opts.name, this.activeErrors.toString(16));
    this.raise('gerror');
  }

  /**
   * GERRORN write: acknowledging is making GERRORN[b] equal GERROR[b]. Toggling a bit that is not
   * active is ignored (software must not do it; the model does not let it fake an error).
   */
  writeGerrorn(v: number): void {
    const before = this.activeErrors;
    this.gerrorn = ((this.gerrorn & ~before) | (v & before)) & GERROR_IMPLEMENTED;
    const acked = before & ~this.activeErrors;
    if (acked !== 0) this.onGerrorAck(acked);
  }
}
