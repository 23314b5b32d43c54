/**
 * A mock-IOMMU kernel for the fault, IOPF and SVA tests: the mock gains the fault ops a real driver
 * has (pageResponse recorded in `responses`, devEnableFeat/devDisableFeat recorded in `features`,
 * domainAllocSva sharing an mm), and the kernel gets processes.
 */
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import { IommuDomain } from '../../core/iommu-domain.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_READ,
  type IommuPageResponse,
  type IopfFault,
} from '../../core/iommu-fault-types.js';
import type { IommuDevFeature } from '../../core/iommu-ops.js';
import { MmContext, type Mm } from '../../mm/mm.js';
import { ProcessTable } from '../../mm/process.js';
import { mockRig, type MockRig } from './mock-rig.js';

export const DEV_A = 'dma@10000000';
export const DEV_B = 'dma@10001000';
/** A master without PASIDs (a stall-only platform device). */
export const DEV_NOPASID = 'dma@10002000';

export interface PageResponseCall {
  dev: string;
  evt: IopfFault;
  msg: IommuPageResponse;
}

export interface FaultRig extends MockRig {
  a: Device;
  b: Device;
  noPasid: Device;
  responses: PageResponseCall[];
  features: { dev: string; op: 'enable' | 'disable'; feat: IommuDevFeature }[];
  svaDomains: IommuDomain[];
  processes: ProcessTable;
  /** Make the next domainAllocSva/set-pasid fail. */
  failSva: { alloc: boolean };
}

export interface FaultRigOptions {
  /** pasid-num-bits of DEV_A (default 8). */
  pasidBitsA?: number;
  /** pasid-num-bits of DEV_B (default 8). */
  pasidBitsB?: number;
  /** The mock IOMMU's PASIDs (default 1 << 10). */
  maxPasids?: number;
  /** Leave out the pageResponse op. */
  noPageResponse?: boolean;
}

export async function faultRig(opts: FaultRigOptions = {}): Promise<FaultRig> {
  const s = await mockRig({
    masters: [
      { name: DEV_A, ids: [[1]], props: { 'pasid-num-bits': opts.pasidBitsA ?? 8, 'dma-can-stall': true } },
      { name: DEV_B, ids: [[2]], props: { 'pasid-num-bits': opts.pasidBitsB ?? 8 } },
      { name: DEV_NOPASID, ids: [[3]], props: { 'dma-can-stall': true } },
    ],
    mock: { maxPasids: opts.maxPasids ?? 1 << 10 },
    masterDriver: true,
  });
  const responses: PageResponseCall[] = [];
  const features: FaultRig['features'] = [];
  const svaDomains: IommuDomain[] = [];
  const failSva = { alloc: false };
  const ops = s.mock.ops;
  if (!opts.noPageResponse) {
    ops.pageResponse = (dev, evt, msg) => {
      responses.push({ dev: dev.name, evt, msg: { ...msg } });
    };
  }
  ops.devEnableFeat = (dev, feat) => {
    features.push({ dev: dev.name, op: 'enable', feat });
  };
  ops.devDisableFeat = (dev, feat) => {
    features.push({ dev: dev.name, op: 'disable', feat });
  };
  ops.domainAllocSva = (_dev: Device, _mm: Mm) => {
    if (failSva.alloc) throw new KernelError('ENOMEM', 'mock: SVA domain allocation refused');
    const setDevPasid = s.mock.domainOps.setDevPasid!;
    const dom: IommuDomain = new IommuDomain({
      ops: {
        attachDev: () => {
          throw new KernelError('EINVAL', 'mock: an SVA domain cannot be attached to a RID');
        },
        setDevPasid: (d, dev, pasid, old) => setDevPasid(d, dev, pasid, old),
        free: () => {
          svaDomains.splice(svaDomains.indexOf(dom), 1);
        },
      },
    });
    svaDomains.push(dom);
    return dom;
  };
  const ctx = new MmContext({ alloc: s.k.alloc, ram: s.k.port.ram });
  return {
    ...s,
    a: s.dev(DEV_A),
    b: s.dev(DEV_B),
    noPasid: s.dev(DEV_NOPASID),
    responses,
    features,
    svaDomains,
    processes: new ProcessTable(ctx),
    failSva,
  };
}

let counter = 0;

/** A page request: LAST unless `partial`, PASID-tagged when `pasid` is given. */
export function pageRequest(addr: number, grpid: number, opts: { pasid?: number; partial?: boolean; perm?: number; privateData?: [number, number]; flags?: number } = {}): IopfFault {
  counter++;
  let flags = opts.flags ?? 0;
  if (!opts.partial) flags |= IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
  if (opts.pasid !== undefined) flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
  return {
    fault: {
      type: 'page-req',
      prm: {
        flags,
        pasid: opts.pasid ?? 0,
        grpid,
        perm: opts.perm ?? IOMMU_FAULT_PERM_READ,
        addr,
        privateData: opts.privateData ?? [0, 0],
      },
    },
  };
}

/** Let queued work (microtasks and the IOPF workqueue) run. */
export async function settle(s: MockRig): Promise<void> {
  await s.k.run(s.k.scheduler.delay(1));
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

export function codes(responses: readonly PageResponseCall[]): number[] {
  return responses.map((r) => r.msg.code);
}
