/**
 * The registry of IOMMU hardware models, and which DT nodes are SMMUs.
 *
 * A model registers the compatibles it implements (or a match function) and a factory. When the
 * machine is built from firmware, every enabled node a registered model matches gets an instance:
 * the factory receives the node, its MMIO regions (translated `reg`), its interrupt lines (in DT
 * order, named by `interrupt-names`), the machine and the model's options, and returns the MMIO
 * devices to map and the port each master stream should use. An SMMU node no model matches gets a
 * placeholder (registers read as zero, writes ignored) and status `no-model`: its masters then reach
 * memory directly.
 *
 * Choosing a model follows the kernel's rule for compatibles: the node's compatible strings are
 * tried most specific first; among models listing the same string the one registered last wins
 * (so a test or scenario can stand in for a built-in model); match functions are tried after every
 * compatible list, also newest first.
 *
 * Model modules register at import time; hw/machine.ts imports the built-in ones.
 */
import type { DmaPort } from './dma.js';
import type { FirmwareNode, PhysRange } from './firmware.js';
import { compatibles } from './firmware.js';
import type { IrqLine } from './gic.js';
import type { Machine } from './machine.js';
import type { MmioDevice } from './mmio.js';

/** A master stream an IOMMU port is asked for. */
export interface IommuMasterInfo {
  /** DT path of the master. */
  name: string;
  streamId: number;
  /** The raw specifier cells (`iommus` cells after the phandle; [streamId] for PCI). */
  cells: readonly number[];
  kind: 'platform' | 'pci';
  canStall: boolean;
  pasidBits: number;
}

export interface IommuModelContext {
  node: FirmwareNode;
  regions: readonly PhysRange[];
  /** The node's interrupts in DT order; null where the controller does not exist in the machine. */
  interrupts: readonly (IrqLine | null)[];
  machine: Machine;
  /** Options for this model from MachineOptions.iommuOptions (by node path, else by model name). */
  options: Readonly<Record<string, unknown>>;
  /**
   * A companion node the IOMMU node names by phandle in `prop` (a Grace CMDQV for an SMMUv3): its
   * regions and interrupt lines; the node counts as modelled with the IOMMU. Null when the property
   * is absent or the companion is disabled; MachineFirmwareError when the phandle is dangling.
   */
  companion(prop: string): IommuCompanion | null;
}

/** A node modelled as part of an IOMMU (see IommuModelContext.companion). */
export interface IommuCompanion {
  node: FirmwareNode;
  regions: readonly PhysRange[];
  interrupts: readonly (IrqLine | null)[];
}

export interface IommuMmioMapping {
  base: number;
  size: number;
  device: MmioDevice;
}

export interface IommuModelInstance {
  readonly status: 'modelled';
  /** The model's name, e.g. "smmu-v3". */
  readonly model: string;
  /** Register regions to map. */
  readonly mmio: readonly IommuMmioMapping[];
  /** The port a master's stream goes through. */
  portFor(master: IommuMasterInfo): DmaPort;
}

export type IommuModelFactory = (ctx: IommuModelContext) => IommuModelInstance;
export type IommuMatch = readonly string[] | ((node: FirmwareNode) => boolean);

export interface IommuModelRegistration {
  readonly name: string;
  readonly match: IommuMatch;
  readonly factory: IommuModelFactory;
}

const registry: IommuModelRegistration[] = [];

/** Register a model; returns the function that unregisters it (for tests). */
export function registerIommuModel(match: IommuMatch, factory: IommuModelFactory, name?: string): () => void {
  const reg: IommuModelRegistration = {
    name: name ?? (typeof match === 'function' ? 'custom' : match.join('|')),
    match,
    factory,
  };
  registry.push(reg);
  return () => {
    const i = registry.indexOf(reg);
    if (i >= 0) registry.splice(i, 1);
  };
}

/** The model for a node, or null. */
export function findIommuModel(node: FirmwareNode): IommuModelRegistration | null {
  const compat = compatibles(node);
  const newestFirst = [...registry].reverse();
  for (const c of compat) {
    for (const r of newestFirst) if (typeof r.match !== 'function' && r.match.includes(c)) return r;
  }
  for (const r of newestFirst) if (typeof r.match === 'function' && r.match(node)) return r;
  return null;
}

/** Compatibles of Arm SMMU implementations (v1, v2, MMU-40x/500 and vendor flavours, v3). */
export const SMMU_COMPATIBLES: ReadonlySet<string> = new Set([
  'arm,smmu-v3',
  'arm,smmu-v1',
  'arm,smmu-v2',
  'arm,mmu-400',
  'arm,mmu-401',
  'arm,mmu-500',
  'qcom,smmu-v2',
  'qcom,smmu-500',
  'cavium,smmu-v2',
  'nvidia,smmu-500',
]);

const SMMU_PATTERNS: readonly RegExp[] = [/^qcom,.*smmu-500$/, /^qcom,.*smmu-v2$/, /^nvidia,.*smmu-500$/];

export function isSmmuCompatible(c: string): boolean {
  return SMMU_COMPATIBLES.has(c) || SMMU_PATTERNS.some((p) => p.test(c));
}

/** True if any of the node's compatibles is an SMMU's. */
export function isSmmuNode(node: FirmwareNode): boolean {
  return compatibles(node).some(isSmmuCompatible);
}
