/**
 * Device links (kernel: drivers/base/core.c, device_link_add()): "consumer needs supplier". A consumer
 * does not probe before every supplier is bound (it defers instead), and a supplier is not unbound
 * before its consumers are. That is how an SMMU gets probed before the masters behind it, and how an
 * SMMU removal first detaches its masters.
 *
 * Links are either added by a driver, or inferred from firmware (an `iommus` / `iommu-map` reference,
 * as fw_devlink does). An inferred link can be relaxed once every driver had its chance and the
 * supplier still is not bound, so a machine whose IOMMU has no driver still boots its masters.
 */
import type { Device } from './device.js';
import { KernelError } from './errno.js';

/** Derived from the two ends (kernel: enum device_link_state). */
export type DeviceLinkState = 'dormant' | 'available' | 'consumer-probe' | 'active';

export interface DeviceLinkOptions {
  /** The link was inferred from firmware rather than added by a driver (kernel: DL_FLAG_INFERRED). */
  inferred?: boolean;
}

export class DeviceLink {
  /** A relaxed link no longer holds the consumer's probe back (kernel: fw_devlink_relax_link()). */
  relaxed = false;

  constructor(
    readonly consumer: Device,
    readonly supplier: Device,
    /** Inferred from firmware; becomes false if a driver asks for the same link explicitly. */
    public inferred: boolean,
  ) {}

  get state(): DeviceLinkState {
    if (this.supplier.status !== 'bound') return 'dormant';
    if (this.consumer.status === 'bound') return 'active';
    if (this.consumer.status === 'probing') return 'consumer-probe';
    return 'available';
  }

  toString(): string {
    return `${this.consumer.name} -> ${this.supplier.name}${this.inferred ? ' (inferred)' : ''}`;
  }
}

/** The link graph of one kernel. */
export class DeviceLinks {
  private readonly links: DeviceLink[] = [];

  /** Every link, in creation order. */
  get all(): readonly DeviceLink[] {
    return this.links;
  }

  /**
   * Adding a link that exists returns it (an explicit request turns an
   * inferred link into an explicit one). Refuses a self link and a link that closes a cycle: the
   * supplier must not already depend on the consumer (kernel: device_is_dependent()).
   */
  // kernel: device_link_add() [drivers/base/core.c]
  add(consumer: Device, supplier: Device, opts: DeviceLinkOptions = {}): DeviceLink {
    if (consumer === supplier) {
      throw new KernelError('EINVAL', `device link: ${consumer.name} cannot be its own supplier`);
    }
    const existing = this.find(consumer, supplier);
    if (existing) {
      if (!opts.inferred && existing.inferred) {
        existing.inferred = false;
        existing.relaxed = false;
      }
      return existing;
    }
    if (isDependent(consumer, supplier, this)) {
      throw new KernelError(
        'EINVAL',
        `device link ${consumer.name} -> ${supplier.name} would close a cycle: ${supplier.name} already depends on ${consumer.name}`,
      );
    }
    const link = new DeviceLink(consumer, supplier, opts.inferred ?? false);
    this.links.push(link);
    return link;
  }

  // kernel: device_link_del() [drivers/base/core.c]
  del(link: DeviceLink): void {
    const i = this.links.indexOf(link);
    if (i < 0) throw new KernelError('ENOENT', `device link ${link.toString()} does not exist`);
    this.links.splice(i, 1);
  }

  find(consumer: Device, supplier: Device): DeviceLink | undefined {
    return this.links.find((l) => l.consumer === consumer && l.supplier === supplier);
  }

  suppliersOf(dev: Device): DeviceLink[] {
    return this.links.filter((l) => l.consumer === dev);
  }

  consumersOf(dev: Device): DeviceLink[] {
    return this.links.filter((l) => l.supplier === dev);
  }

  /** Drop every link that has `dev` at either end (kernel: device_links_purge()). */
  purge(dev: Device): DeviceLink[] {
    const gone = this.links.filter((l) => l.consumer === dev || l.supplier === dev);
    for (const l of gone) this.links.splice(this.links.indexOf(l), 1);
    return gone;
  }
}

/**
 * True if `target` is `dev` or depends on it through children or consumer links, transitively
 * (kernel: device_is_dependent()).
 */
export function isDependent(dev: Device, target: Device, links: DeviceLinks): boolean {
  const seen = new Set<Device>();
  const stack: Device[] = [dev];
  while (stack.length > 0) {
    const d = stack.pop()!;
    if (d === target) return true;
    if (seen.has(d)) continue;
    seen.add(d);
    stack.push(...d.children);
    for (const l of links.consumersOf(d)) stack.push(l.consumer);
  }
  return false;
}
