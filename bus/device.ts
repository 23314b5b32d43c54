/**
 * The device: what the kernel knows of one piece of hardware (kernel: struct device). It names its
 * firmware description (a DT node, or an ACPI node later), its parent, the bus it sits on, the driver
 * bound to it, and the per-device state other subsystems hang off it: the IOMMU firmware spec
 * (`fwspec`, from `iommus` / `iommu-map`), a slot the IOMMU core owns (`iommu`), DMA coherency and masks.
 *
 * A device belongs to exactly one kernel (DriverCore) once added; a kexec boots a new kernel whose
 * devices are new objects. Binding state (driver, status, matched compatible) is written only by the
 * DriverCore that owns the device.
 */
import type { CpuPort } from '../hw/cpu-port.js';
import type { Bus } from './bus.js';
import type { Driver } from './driver.js';
import type { DriverCore } from './driver-core.js';
import { KernelError } from './errno.js';
import type { IommuFwspec } from './iommu-fwspec.js';
import type { DtNode } from './of/tree.js';

/**
 * Where a device stands with respect to drivers:
 * - `unbound`: registered, not (or no longer) bound, no probe outcome to report;
 * - `no-driver`: a probe was attempted and no registered driver matches;
 * - `probing`: a driver's probe is running;
 * - `bound`: a driver's probe succeeded;
 * - `deferred`: the last probe asked to be retried later (EPROBE_DEFER or a supplier not ready);
 * - `failed`: the last probe failed with another error (see `probeError`).
 */
export type DeviceStatus = 'unbound' | 'no-driver' | 'probing' | 'bound' | 'deferred' | 'failed';

/** An ACPI namespace device, for ACPI-described machines (matched by HID, then CIDs). */
export interface AcpiFwnode {
  readonly kind: 'acpi';
  /** Namespace path, e.g. "\\_SB.SMMU0". */
  readonly path: string;
  readonly hid: string;
  readonly cids: readonly string[];
  readonly uid: string | null;
}

// kernel: DMA_BIT_MASK() [dma-mapping.h]
export function dmaBitMask(bits: number): bigint {
  if (!Number.isInteger(bits) || bits < 0 || bits > 64) {
    throw new KernelError('EINVAL', `DMA mask width must be an integer in [0, 64], got ${bits}`);
  }
  return (1n << BigInt(bits)) - 1n;
}

/** A release action registered against a device (kernel: devres). */
export type DevresRelease = () => void | Promise<void>;

/**
 * Resources a driver acquires for a device and that are released, newest first, when the driver
 * unbinds or its probe fails (kernel: devres_release_all()).
 */
export class Devres {
  private readonly actions: { label: string; release: DevresRelease }[] = [];

  // kernel: devm_add_action() [device/devres.h]
  add(label: string, release: DevresRelease): void {
    this.actions.push({ label, release });
  }

  /** Labels of the actions still registered, oldest first. */
  get labels(): string[] {
    return this.actions.map((a) => a.label);
  }

  /**
   * Run and forget every action, newest first. One failing action does not stop the others;
   * the failures are returned as "label: message".
   */
  async releaseAll(): Promise<string[]> {
    const errors: string[] = [];
    while (this.actions.length > 0) {
      const a = this.actions.pop()!;
      try {
        await a.release();
      } catch (e) {
        errors.push(`${a.label}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return errors;
  }
}

export interface DeviceInit {
  /** Unique within a kernel: a DT path for platform devices, "0000:00:01.0" for PCI. */
  name: string;
  bus: Bus;
  parent?: Device | null;
  ofNode?: DtNode | null;
  fwnode?: AcpiFwnode | null;
  dmaCoherent?: boolean;
}

export class Device {
  readonly name: string;
  readonly bus: Bus;
  readonly parent: Device | null;
  readonly ofNode: DtNode | null;
  readonly fwnode: AcpiFwnode | null;
  readonly children: Device[] = [];
  readonly devres = new Devres();

  /** Driver-private state (kernel: dev_set_drvdata()); cleared when the driver unbinds. */
  driverData: unknown = null;
  /** IOMMU firmware description: which IOMMU and which IDs (kernel: dev_iommu_fwspec_get()). */
  fwspec: IommuFwspec | null = null;
  /** Owned by the IOMMU core (kernel: dev->iommu); the device model never looks inside. */
  iommu: unknown = null;
  /** DMA is cache-coherent (DT `dma-coherent`). */
  dmaCoherent: boolean;
  /** The kernel's dev->dma_mask; 32 bits until the driver widens it, as for platform devices. */
  dmaMask: bigint = dmaBitMask(32);
  /** The kernel's dev->coherent_dma_mask */
  coherentDmaMask: bigint = dmaBitMask(32);

  private _core: DriverCore | null = null;
  private _driver: Driver | null = null;
  private _status: DeviceStatus = 'unbound';
  private _probeError: string | null = null;
  private _matchedCompatible: string | null = null;
  private _registered = false;

  constructor(init: DeviceInit) {
    if (init.name.length === 0) throw new KernelError('EINVAL', 'a device needs a non-empty name');
    this.name = init.name;
    this.bus = init.bus;
    this.parent = init.parent ?? null;
    this.ofNode = init.ofNode ?? null;
    this.fwnode = init.fwnode ?? null;
    this.dmaCoherent = init.dmaCoherent ?? false;
  }

  /** The kernel this device was added to (throws if it was never added). */
  get core(): DriverCore {
    if (!this._core) throw new KernelError('ENODEV', `device ${this.name} has not been added to a kernel`);
    return this._core;
  }

  /** The machine as this device's kernel sees it. */
  get port(): CpuPort {
    return this.core.port;
  }

  get driver(): Driver | null {
    return this._driver;
  }

  get status(): DeviceStatus {
    return this._status;
  }

  /** Why the last probe failed or deferred; null when bound or never probed. */
  get probeError(): string | null {
    return this._probeError;
  }

  /** The ofMatchTable entry (a compatible string) the bound driver matched, or null. */
  get matchedCompatible(): string | null {
    return this._matchedCompatible;
  }

  /** True between addDevice and removeDevice. */
  get registered(): boolean {
    return this._registered;
  }

  /**
   * The ID this device's transactions carry on its bus (a PCI requester ID), by which `msi-map` and
   * `iommu-map` name it; null for buses without one.
   */
  get requesterId(): number | null {
    return null;
  }

  /** True if `other` is this device or one of its ancestors. */
  isDescendantOf(other: Device): boolean {
    for (let d: Device | null = this; d; d = d.parent) if (d === other) return true;
    return false;
  }

  toString(): string {
    return this.name;
  }

  /** @internal DriverCore only: the device joins a kernel. */
  _attach(core: DriverCore): void {
    if (this._core && this._core !== core) {
      throw new KernelError('EEXIST', `device ${this.name} already belongs to another kernel`);
    }
    if (this._registered) throw new KernelError('EEXIST', `device ${this.name} is already registered`);
    this._core = core;
    this._registered = true;
  }

  /** @internal DriverCore only: the device leaves its kernel. */
  _detach(): void {
    this._registered = false;
  }

  /** @internal DriverCore only: record the binding state. */
  _setBinding(driver: Driver | null, status: DeviceStatus, error: string | null, matched: string | null): void {
    this._driver = driver;
    this._status = status;
    this._probeError = error;
    this._matchedCompatible = matched;
    if (driver === null) this.driverData = null;
  }
}
