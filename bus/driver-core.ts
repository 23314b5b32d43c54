/**
 * The driver core of one booted kernel (kernel: drivers/base/{core,dd}.c): the registered drivers,
 * the devices in `devices_kset` order, binding by bus match, deferred probe, device links, unbind and
 * removal, and system shutdown.
 *
 * There is no global instance: a kexec throws one kernel (and its DriverCore) away and boots another
 * on the same machine.
 *
 * Deferred probe: a probe that throws KernelError('EPROBE_DEFER'), or a device whose link suppliers
 * are not bound yet, goes on the pending list. Whenever any device binds, the pending list is retried
 * (in order, each retried device moved to the tail of `devices_kset`) until a pass binds nothing new.
 * The retry runs when the outermost driver-core call finishes, so a probe that adds child devices
 * (a PCI host bridge) sees them probed before the retry pass.
 *
 * Ordering: `devices_kset` keeps parents before children and suppliers before consumers (a new link
 * or a deferred retry moves the consumer and its dependents to the tail). `shutdown()` walks it in
 * reverse, so masters are shut down before the SMMU they sit behind.
 */
import type { CpuPort, TraceEventId } from '../hw/cpu-port.js';
import type { Device } from './device.js';
import { DeviceLinks, type DeviceLink, type DeviceLinkOptions } from './device-link.js';
import { firmwareMatch, type Driver } from './driver.js';
import { isKernelError, KernelError } from './errno.js';
import { KernelLog } from './log.js';
import type { DeviceTree, DtNode } from './of/tree.js';

const LOG_NS = 'iommu:bus:core';

export interface DriverCoreOptions {
  port: CpuPort;
  /** The firmware device tree this kernel booted from, if any. */
  dt?: DeviceTree | null;
  /** Which kernel this is on the machine: 0 for the first boot, 1 after one kexec, … */
  instance?: number;
}

/**
 * What the driver core asks of the DMA layer around a driver's binding (kernel: bus->dma_configure()
 * before probe, bus->dma_cleanup() after remove or a failed probe). The iommu core installs these;
 * bus/ cannot know about it.
 */
export interface DmaConfigureHooks {
  configure(dev: Device, driverManagedDma: boolean): Promise<void>;
  cleanup(dev: Device, driverManagedDma: boolean): Promise<void>;
}

/** The kernel's bus notifier (BUS_NOTIFY_ADD_DEVICE / BUS_NOTIFY_REMOVED_DEVICE). */
export type BusNotifier = (dev: Device, action: 'add' | 'removed') => Promise<void>;

export interface DeferredProbe {
  device: Device;
  reason: string;
}

export interface ShutdownReport {
  /** Devices whose driver's `.shutdown` ran, in call order. */
  called: string[];
  /** Bound devices whose driver has no `.shutdown` (their hardware keeps running). */
  skipped: string[];
  errors: { device: string; error: string }[];
}

type ProbeOutcome = 'bound' | 'deferred' | 'failed' | 'rejected' | 'skipped';

export class DriverCore {
  readonly port: CpuPort;
  readonly dt: DeviceTree | null;
  readonly instance: number;
  readonly log: KernelLog;
  readonly links = new DeviceLinks();

  private readonly drivers: Driver[] = [];
  /** The kernel's devices_kset — registration order, reordered by links and deferred retries. */
  private readonly kset: Device[] = [];
  private readonly byName = new Map<string, Device>();
  private readonly byOfNode = new Map<DtNode, Device>();
  /** The kernel's deferred_probe_pending_list */
  private readonly pending: Device[] = [];
  private readonly bindOrder: Device[] = [];
  private readonly teardownHooks: { label: string; fn: () => void }[] = [];

  /**
   * Set by every successful bind, consumed by a retry pass.
   * It stays set until the outermost operation ends, so a bind while another probe defers is not missed.
   */
  // kernel: driver_deferred_probe_trigger() [dd.c]
  private retryWanted = false;
  private retrying = false;
  private opsInFlight = 0;
  /** Non-null once probing is blocked (kernel: device_block_probing()); the reason. */
  private probeBlock: string | null = null;
  private shutdownResult: ShutdownReport | null = null;
  private dmaHooks: DmaConfigureHooks | null = null;
  private _initcallsDone = false;
  private readonly busNotifiers: BusNotifier[] = [];
  private tornDown = false;

  constructor(opts: DriverCoreOptions) {
    this.port = opts.port;
    this.dt = opts.dt ?? null;
    this.instance = opts.instance ?? 0;
    this.log = new KernelLog(opts.port);
  }

  // ---- queries -------------------------------------------------------------------------------

  /** Registered devices in devices_kset order. */
  get devices(): readonly Device[] {
    return this.kset;
  }

  get registeredDrivers(): readonly Driver[] {
    return this.drivers;
  }

  /** Devices currently bound, in the order their probes succeeded. */
  get probeOrder(): readonly Device[] {
    return this.bindOrder;
  }

  /** What the last `shutdown()` did, or null before it ran. */
  get shutdownRecord(): ShutdownReport | null {
    return this.shutdownResult;
  }

  findDevice(name: string): Device | undefined {
    return this.byName.get(name);
  }

  // kernel: of_find_device_by_node() [platform.c]
  findDeviceByOfNode(node: DtNode): Device | undefined {
    return this.byOfNode.get(node);
  }

  /**
   * Every built-in driver has registered and had its chance (kernel: initcalls_done). From then on a
   * supplier with no driver will never appear (there are no modules): waiting on it is pointless.
   */
  get initcallsDone(): boolean {
    return this._initcallsDone;
  }

  /** Devices waiting on the deferred list, with why they last deferred. */
  deferredProbes(): DeferredProbe[] {
    return this.pending.map((device) => ({ device, reason: device.probeError ?? 'probe deferred' }));
  }

  // ---- drivers -------------------------------------------------------------------------------

  /** + driver_attach(): offer every unbound device of its bus to the driver. */
  // kernel: driver_register() [drivers/base/driver.c]
  registerDriver(drv: Driver): Promise<void> {
    return this.op(async () => {
      if (this.drivers.includes(drv)) throw new KernelError('EEXIST', `driver ${drv.name} is already registered`);
      if (this.drivers.some((d) => d.bus === drv.bus && d.name === drv.name)) {
        throw new KernelError('EBUSY', `a driver named ${drv.name} is already registered on bus ${drv.bus.name}`);
      }
      this.drivers.push(drv);
      for (const dev of [...this.kset]) {
        if (!dev.registered || dev.driver || dev.status === 'probing' || dev.bus !== drv.bus) continue;
        if (!this.matches(dev, drv)) continue;
        this.dropPending(dev);
        await this.reallyProbe(dev, drv);
      }
    });
  }

  /** Unbind every device it drives, then forget it. */
  // kernel: driver_unregister() [drivers/base/driver.c]
  unregisterDriver(drv: Driver): Promise<void> {
    return this.op(async () => {
      const i = this.drivers.indexOf(drv);
      if (i < 0) throw new KernelError('ENOENT', `driver ${drv.name} is not registered`);
      for (const dev of [...this.kset].reverse()) {
        if (dev.driver === drv) await this.releaseDriver(dev);
      }
      this.drivers.splice(this.drivers.indexOf(drv), 1);
    });
  }

  // ---- hooks ---------------------------------------------------------------------------------

  /** Install the DMA layer's configure/cleanup hooks (one set per kernel). */
  setDmaConfigureHooks(hooks: DmaConfigureHooks): void {
    if (this.dmaHooks) throw new KernelError('EBUSY', 'DMA configure hooks are already installed');
    this.dmaHooks = hooks;
  }

  /** Told of every device added and removed from now on. */
  // kernel: bus_register_notifier() [drivers/base/bus.c]
  addBusNotifier(fn: BusNotifier): void {
    this.busNotifiers.push(fn);
  }

  private async notify(dev: Device, action: 'add' | 'removed'): Promise<void> {
    for (const fn of this.busNotifiers) {
      try {
        await fn(dev, action);
      } catch (e) {
        this.log.err(dev.name, `bus notifier (${action}) failed: ${errorText(e)}`, LOG_NS);
      }
    }
  }

  // ---- devices -------------------------------------------------------------------------------

  /**
   * + bus_probe_device(). With `probe: false` the device is registered but not
   * offered to drivers until `attach` (population registers a whole tree, links it, then probes).
   */
  // kernel: device_add() [drivers/base/core.c]
  addDevice(dev: Device, opts: { probe?: boolean } = {}): Promise<void> {
    return this.op(async () => {
      if (this.byName.has(dev.name)) throw new KernelError('EEXIST', `a device named ${dev.name} is already registered`);
      if (dev.parent && (!dev.parent.registered || this.byName.get(dev.parent.name) !== dev.parent)) {
        throw new KernelError('EINVAL', `device ${dev.name}: parent ${dev.parent.name} is not registered in this kernel`);
      }
      dev._attach(this);
      this.kset.push(dev);
      this.byName.set(dev.name, dev);
      if (dev.ofNode && !this.byOfNode.has(dev.ofNode)) this.byOfNode.set(dev.ofNode, dev);
      dev.parent?.children.push(dev);
      await this.notify(dev, 'add');
      if (opts.probe ?? true) await this.busProbeDevice(dev);
    });
  }

  /**
   * Remove the children first (newest first), unbind the device (its
   * consumers first), release what its driver left behind, and drop its links.
   */
  // kernel: device_unregister() [drivers/base/core.c]
  removeDevice(dev: Device): Promise<void> {
    return this.op(() => this.deleteDevice(dev));
  }

  /** Unbind the device (and, first, its consumers). */
  // kernel: device_release_driver() [dd.c]
  unbind(dev: Device): Promise<void> {
    return this.op(async () => {
      this.checkOwned(dev);
      await this.releaseDriver(dev);
    });
  }

  /** Try to bind an unbound device now. */
  // kernel: device_attach() [dd.c]
  attach(dev: Device): Promise<void> {
    return this.op(async () => {
      this.checkOwned(dev);
      if (dev.driver) return;
      this.dropPending(dev);
      await this.busProbeDevice(dev);
    });
  }

  // ---- links ---------------------------------------------------------------------------------

  /**
   * As the kernel's device_link_add(): `consumer` will not probe before `supplier` is bound, and is unbound
   * before `supplier` is. The consumer (and what depends on it) moves to the tail of devices_kset.
   */
  linkAdd(consumer: Device, supplier: Device, opts: DeviceLinkOptions = {}): DeviceLink {
    this.checkOwned(consumer);
    this.checkOwned(supplier);
    const link = this.links.add(consumer, supplier, opts);
    this.reorderToTail(consumer);
    return link;
  }

  /** As the kernel's device_link_del() */
  linkDel(link: DeviceLink): void {
    this.links.del(link);
  }

  // ---- boot completion, shutdown, teardown ----------------------------------------------------

  /**
   * The end of boot (kernel: deferred_probe_initcall(), fw_devlink_drivers_done(), and the
   * deferred_probe_timeout expiring). Retries the deferred list; then relaxes firmware-inferred links
   * whose supplier no driver matched; then those whose supplier still is not bound; each time
   * retrying. Returns what is still deferred, each logged as "deferred probe pending".
   */
  settle(): Promise<DeferredProbe[]> {
    return this.op(async () => {
      this._initcallsDone = true;
      this.retryWanted = true;
      await this.processDeferred();
      this.relaxInferredLinks((s) => s.status === 'no-driver' || s.status === 'unbound', 'no driver matches it');
      await this.processDeferred();
      this.relaxInferredLinks((s) => s.status !== 'bound', 'deferred probe timeout');
      await this.processDeferred();
      const left = this.deferredProbes();
      for (const d of left) this.log.warn(d.device.name, `deferred probe pending: ${d.reason}`, LOG_NS);
      return left;
    });
  }

  /**
   * Block probing, then call `.shutdown` of every bound device's driver in
   * reverse devices_kset order (consumers and children before suppliers and parents). Drivers without
   * `.shutdown` are skipped and listed; a failing `.shutdown` is logged and the walk goes on.
   */
  // kernel: device_shutdown() [drivers/base/core.c]
  async shutdown(): Promise<ShutdownReport> {
    if (this.shutdownResult) return this.shutdownResult;
    this.probeBlock = 'the kernel is shutting down';
    const report: ShutdownReport = { called: [], skipped: [], errors: [] };
    this.shutdownResult = report;
    for (const dev of [...this.kset].reverse()) {
      const drv = dev.driver;
      if (!drv || dev.status !== 'bound') continue;
      if (!drv.shutdown) {
        report.skipped.push(dev.name);
        continue;
      }
      report.called.push(dev.name);
      this.traceCustom(dev, 'shutdown', { driver: drv.name });
      try {
        await drv.shutdown(dev);
      } catch (e) {
        const error = errorText(e);
        report.errors.push({ device: dev.name, error });
        this.log.err(dev.name, `${drv.name}: shutdown failed: ${error}`, LOG_NS);
      }
    }
    return report;
  }

  /** Register something to undo when this kernel is discarded (IRQ handlers, mappings). */
  onTeardown(label: string, fn: () => void): void {
    if (this.tornDown) throw new KernelError('ENODEV', `kernel ${this.instance} has been torn down`);
    this.teardownHooks.push({ label, fn });
  }

  /**
   * Discard this kernel (kernel: the last steps of machine_kexec(), masking every interrupt): run the
   * teardown hooks newest first so nothing of it stays attached to the machine. Probing stays blocked.
   */
  teardown(): void {
    if (this.tornDown) return;
    this.tornDown = true;
    this.probeBlock ??= 'the kernel has been torn down';
    while (this.teardownHooks.length > 0) {
      const h = this.teardownHooks.pop()!;
      try {
        h.fn();
      } catch (e) {
        this.log.err('kernel', `teardown of ${h.label} failed: ${errorText(e)}`, LOG_NS);
      }
    }
  }

  get isTornDown(): boolean {
    return this.tornDown;
  }

  // ---- internals -----------------------------------------------------------------------------

  /** Run a driver-core operation; the outermost one to finish runs the deferred-probe retries. */
  private async op<T>(fn: () => Promise<T>): Promise<T> {
    this.opsInFlight++;
    let result: T;
    try {
      result = await fn();
    } finally {
      this.opsInFlight--;
    }
    if (this.opsInFlight === 0) await this.processDeferred();
    return result;
  }

  private checkOwned(dev: Device): void {
    if (!dev.registered || this.byName.get(dev.name) !== dev) {
      throw new KernelError('ENODEV', `device ${dev.name} is not registered in this kernel`);
    }
  }

  private matches(dev: Device, drv: Driver): boolean {
    try {
      return drv.bus.match(dev, drv);
    } catch (e) {
      this.log.err(dev.name, `matching against ${drv.name} failed: ${errorText(e)}`, LOG_NS);
      return false;
    }
  }

  /** Offer the device to each matching driver in registration order. */
  // kernel: __device_attach() [dd.c]
  private async busProbeDevice(dev: Device): Promise<void> {
    if (dev.driver || dev.status === 'probing') return;
    const candidates = this.drivers.filter((d) => d.bus === dev.bus && this.matches(dev, d));
    if (candidates.length === 0) {
      dev._setBinding(null, 'no-driver', null, null);
      this.traceProbe(dev, null, 'no-driver', null);
      return;
    }
    for (const drv of candidates) {
      const outcome = await this.reallyProbe(dev, drv);
      if (outcome !== 'rejected') return;
    }
  }

  // kernel: really_probe() [dd.c]
  private async reallyProbe(dev: Device, drv: Driver): Promise<ProbeOutcome> {
    if (dev.driver || dev.status === 'probing' || !dev.registered) return 'skipped';
    if (this.probeBlock) {
      this.defer(dev, drv, `probing blocked: ${this.probeBlock}`);
      return 'deferred';
    }
    // kernel: device_links_check_suppliers() [drivers/base/core.c]
    const waiting = this.links.suppliersOf(dev).find((l) => !l.relaxed && l.supplier.status !== 'bound');
    if (waiting) {
      this.defer(dev, drv, `supplier ${waiting.supplier.name} not ready`);
      return 'deferred';
    }
    this.dropPending(dev);
    const matched = firmwareMatch(dev, drv);
    dev._setBinding(drv, 'probing', null, matched);
    let dmaConfigured = false;
    try {
      // (kernel: really_probe() → dev->bus->dma_configure())
      if (this.dmaHooks) {
        await this.dmaHooks.configure(dev, drv.driverManagedDma ?? false);
        dmaConfigured = true;
      }
      await drv.probe(dev);
    } catch (e) {
      const error = errorText(e);
      const leftovers = await dev.devres.releaseAll();
      for (const l of leftovers) this.log.err(dev.name, `releasing ${l} after failed probe`, LOG_NS);
      if (dmaConfigured) await this.dmaCleanup(dev, drv);
      if (isKernelError(e, 'EPROBE_DEFER')) {
        this.defer(dev, drv, error);
        return 'deferred';
      }
      dev._setBinding(null, 'failed', error, null);
      if (isKernelError(e, 'ENODEV') || isKernelError(e, 'ENXIO')) {
        this.log.debug(dev.name, `driver ${drv.name} rejects match: ${error}`, LOG_NS);
        this.traceProbe(dev, drv, 'failed', error);
        return 'rejected';
      }
      this.log.err(dev.name, `probe with driver ${drv.name} failed: ${error}`, LOG_NS);
      this.traceProbe(dev, drv, 'failed', error);
      return 'failed';
    }
    if (!dev.registered) return 'skipped';
    // (kernel: driver_bound())
    dev._setBinding(drv, 'bound', null, matched);
    this.bindOrder.push(dev);
    this.traceProbe(dev, drv, 'bound', null);
    this.log.debug(dev.name, `bound to ${drv.name}`, LOG_NS);
    this.retryWanted = true;
    return 'bound';
  }

  private defer(dev: Device, drv: Driver, reason: string): void {
    dev._setBinding(null, 'deferred', reason, null);
    if (!this.pending.includes(dev)) this.pending.push(dev);
    this.log.debug(dev.name, `${drv.name} probe deferred: ${reason}`, LOG_NS);
    this.traceProbe(dev, drv, 'deferred', reason);
  }

  private dropPending(dev: Device): void {
    const i = this.pending.indexOf(dev);
    if (i >= 0) this.pending.splice(i, 1);
  }

  /** Retry the pending list while binds keep happening. */
  // kernel: deferred_probe_work_func() [dd.c]
  private async processDeferred(): Promise<void> {
    if (this.retrying) return;
    this.retrying = true;
    try {
      while (this.retryWanted && this.pending.length > 0) {
        this.retryWanted = false;
        for (const dev of [...this.pending]) {
          if (!this.pending.includes(dev) || !dev.registered) continue;
          this.dropPending(dev);
          // (kernel: device_pm_move_to_tail(): probe order is what shutdown order follows.)
          this.reorderToTail(dev);
          await this.busProbeDevice(dev);
        }
      }
      this.retryWanted = false;
    } finally {
      this.retrying = false;
    }
  }

  /** The device, then its children and consumers, to the tail. */
  // kernel: device_reorder_to_tail() [drivers/base/core.c]
  private reorderToTail(dev: Device): void {
    const i = this.kset.indexOf(dev);
    if (i < 0) return;
    this.kset.splice(i, 1);
    this.kset.push(dev);
    for (const child of dev.children) this.reorderToTail(child);
    for (const l of this.links.consumersOf(dev)) this.reorderToTail(l.consumer);
  }

  // kernel: __device_release_driver() [dd.c]
  private async releaseDriver(dev: Device): Promise<void> {
    if (dev.status === 'probing') throw new KernelError('EBUSY', `device ${dev.name} is being probed`);
    const drv = dev.driver;
    if (!drv) {
      this.dropPending(dev);
      if (dev.status === 'deferred') dev._setBinding(null, 'unbound', null, null);
      return;
    }
    // (kernel: device_links_unbind_consumers())
    for (const l of this.links.consumersOf(dev)) {
      if (l.consumer.driver) {
        this.log.debug(l.consumer.name, `unbinding: supplier ${dev.name} is going away`, LOG_NS);
        await this.releaseDriver(l.consumer);
      }
    }
    try {
      await drv.remove?.(dev);
    } catch (e) {
      this.log.err(dev.name, `${drv.name}: remove failed: ${errorText(e)}`, LOG_NS);
    }
    for (const l of await dev.devres.releaseAll()) this.log.err(dev.name, `releasing ${l}`, LOG_NS);
    await this.dmaCleanup(dev, drv);
    dev._setBinding(null, 'unbound', null, null);
    const i = this.bindOrder.indexOf(dev);
    if (i >= 0) this.bindOrder.splice(i, 1);
    this.traceCustom(dev, 'unbind', { driver: drv.name });
  }

  /** The kernel's dev->bus->dma_cleanup() */
  private async dmaCleanup(dev: Device, drv: Driver): Promise<void> {
    if (!this.dmaHooks) return;
    try {
      await this.dmaHooks.cleanup(dev, drv.driverManagedDma ?? false);
    } catch (e) {
      this.log.err(dev.name, `DMA cleanup failed: ${errorText(e)}`, LOG_NS);
    }
  }

  private async deleteDevice(dev: Device): Promise<void> {
    this.checkOwned(dev);
    for (const child of [...dev.children].reverse()) {
      if (child.registered) await this.deleteDevice(child);
    }
    await this.releaseDriver(dev);
    for (const l of await dev.devres.releaseAll()) this.log.err(dev.name, `releasing ${l}`, LOG_NS);
    this.links.purge(dev);
    this.dropPending(dev);
    this.kset.splice(this.kset.indexOf(dev), 1);
    this.byName.delete(dev.name);
    if (dev.ofNode && this.byOfNode.get(dev.ofNode) === dev) this.byOfNode.delete(dev.ofNode);
    if (dev.parent) {
      const i = dev.parent.children.indexOf(dev);
      if (i >= 0) dev.parent.children.splice(i, 1);
    }
    dev._setBinding(null, 'unbound', null, null);
    await this.notify(dev, 'removed');
    dev._detach();
  }

  private relaxInferredLinks(supplierStuck: (supplier: Device) => boolean, why: string): void {
    for (const l of this.links.all) {
      if (!l.inferred || l.relaxed || !supplierStuck(l.supplier)) continue;
      l.relaxed = true;
      this.retryWanted = true;
      this.log.warn(l.consumer.name, `ignoring dependency on ${l.supplier.name} (${why})`, LOG_NS);
    }
  }

  private traceProbe(dev: Device, drv: Driver | null, result: 'bound' | 'deferred' | 'failed' | 'no-driver', error: string | null): void {
    const trace = this.port.trace;
    if (!trace.active) return;
    trace.emit({ kind: 'probe', time: this.port.now(), track: dev.name, driver: drv?.name ?? null, result, error });
  }

  private traceCustom(dev: Device, name: TraceEventId, args: Record<string, unknown>): void {
    const trace = this.port.trace;
    if (!trace.active) return;
    trace.emit({ kind: 'custom', time: this.port.now(), track: dev.name, name, args });
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
