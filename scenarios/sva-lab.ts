/**
 * Lab helpers for the I/O page-fault and SVA scenarios and their end-to-end tests: the PCIe accelerator
 * and the stall-capable engines of the `virt` machine, enabling IOPF and SVA on a master, watching
 * the SMMUv3's page responses on its command queue, and the user-space side of the fault records (a
 * VMM that reads records, resolves them and writes responses, as a VFIO or iommufd user would).
 */
import type { Device } from '../bus/device.js';
import { pciSetMaster } from '../bus/pci/command.js';
import { PciDevice } from '../bus/pci/pci-device.js';
import type { IommuUserFaultQueue } from '../core/iommu-fault-legacy.js';
import { iommuDevEnableFeature } from '../core/iommu.js';
import { iommuSvaBindDevice, type IommuSva } from '../core/iommu-sva.js';
import { CMDQ_0_OP, CMDQ_OP_PRI_RESP, CMDQ_OP_RESUME, CMDQ_PRI_0_SSID, CMDQ_PRI_1_GRPID, CMDQ_PRI_1_RESP, CMDQ_RESUME_0_RESP, CMDQ_RESUME_1_STAG } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import type { PcieEndpoint } from '../hw/pci/endpoint.js';
import type { Mm } from '../mm/mm.js';
import { deviceOf, runIn, type SmmuV3Lab } from './smmu-v3-lab.js';

/** The accelerator endpoint of `virt`: ATS, PRI, 20 PASID bits, RID 0x08 behind the SMMUv3. */
export const ACCEL = { dev: '0000:00:01.0', node: '/pcie@3f000000/accel@1,0', sid: 0x08 } as const;
/** `virt`'s stall-capable engines: on the SMMUv3 (8 PASID bits), on the MMU-500 (no PASIDs). */
export const STALL_ENGINE_V3 = '/dma@c000000';
export const STALL_ENGINE_V2 = '/dma@c020000';

export const PAGE = 4096;

/** The accelerator's kernel device (bus mastering on) and its endpoint model. */
export function accel(lab: SmmuV3Lab): { pdev: PciDevice; ep: PcieEndpoint } {
  const pdev = deviceOf(lab, ACCEL.dev);
  if (!(pdev instanceof PciDevice)) throw new Error(`${ACCEL.dev} is not a PCI device`);
  pciSetMaster(pdev);
  const ep = lab.machine.endpoint(ACCEL.node);
  if (!ep) throw new Error(`no endpoint model ${ACCEL.node}`);
  return { pdev, ep };
}

/** Enable IOPF, then SVA (unless `iopfOnly`), on `dev`. */
export async function enableIopf(lab: SmmuV3Lab, dev: Device, opts: { iopfOnly?: boolean } = {}): Promise<void> {
  await runIn(lab, iommuDevEnableFeature(dev, 'IOPF'), 'enable IOPF');
  if (!opts.iopfOnly) await runIn(lab, iommuDevEnableFeature(dev, 'SVA'), 'enable SVA');
}

/** Enable IOPF and SVA on `dev` and bind a new process to it: the process's mm and the bond (its PASID). */
export async function bindNewProcess(lab: SmmuV3Lab, dev: Device): Promise<{ mm: Mm; bond: IommuSva }> {
  await enableIopf(lab, dev);
  const mm = lab.kernel.processes.spawn().mm;
  const bond = await runIn(lab, iommuSvaBindDevice(dev, mm), 'bind');
  return { mm, bond };
}

/** A page response the SMMUv3 driver issued: CMD_PRI_RESP or CMD_RESUME. */
export interface SmmuResponse {
  op: 'PRI_RESP' | 'RESUME';
  /** PRG index or STAG. */
  grpid: number;
  ssid: number;
  /** PRI_RESP: 0 deny (Invalid), 1 fail, 2 success; RESUME: 0 abort... as the command encodes it. */
  resp: number;
}

/** Record the PRI_RESP / RESUME commands the driver issues until `stop()`. */
export function watchResponses(lab: SmmuV3Lab): { list: SmmuResponse[]; stop(): void } {
  const list: SmmuResponse[] = [];
  const prev = lab.smmu.cmdq.onCommand;
  lab.smmu.cmdq.onCommand = (w, off) => {
    prev?.(w, off);
    const op = CMDQ_0_OP.get(w, off);
    if (op === CMDQ_OP_PRI_RESP) list.push({ op: 'PRI_RESP', grpid: CMDQ_PRI_1_GRPID.get(w, off), ssid: CMDQ_PRI_0_SSID.get(w, off), resp: CMDQ_PRI_1_RESP.get(w, off) });
    else if (op === CMDQ_OP_RESUME) list.push({ op: 'RESUME', grpid: CMDQ_RESUME_1_STAG.get(w, off), ssid: 0, resp: CMDQ_RESUME_0_RESP.get(w, off) });
  };
  return {
    list,
    stop: () => {
      lab.smmu.cmdq.onCommand = prev;
    },
  };
}

// ---- the user-space side of the fault records ---------------------------------------------------

/** A fault record as user space decodes it (the layout of core/iommu-fault-legacy.ts). */
export interface UserFaultRecord {
  argsz: number;
  version: number;
  /** 1 DMA_UNRECOV, 2 PAGE_REQ */
  type: number;
  flags: number;
  pasid: number;
  grpid: number;
  perm: number;
  addr: number;
  privateData: [bigint, bigint];
}

/** UAPI page-request flags. */
export const REC_PASID_VALID = 1;
export const REC_LAST_PAGE = 2;
export const REC_PRIV_DATA = 4;
/** UAPI page-response flags. */
export const RESP_PASID_VALID = 1;
export const RESP_PRIVATE_DATA = 2;

/** Read every record waiting in `q` with a full-size (72-byte) buffer. */
export function readFaultRecords(q: IommuUserFaultQueue): UserFaultRecord[] {
  const out: UserFaultRecord[] = [];
  for (;;) {
    const buf = new Uint8Array(72);
    const v = new DataView(buf.buffer);
    v.setUint32(0, 72, true);
    if (q.read(buf) === 0) return out;
    out.push({
      argsz: v.getUint32(0, true),
      version: v.getUint32(4, true),
      type: v.getUint32(8, true),
      flags: v.getUint32(16, true),
      pasid: v.getUint32(20, true),
      grpid: v.getUint32(24, true),
      perm: v.getUint32(28, true),
      addr: Number(v.getBigUint64(32, true)),
      privateData: [v.getBigUint64(40, true), v.getBigUint64(48, true)],
    });
  }
}

/** A version 1 page response record; 40 bytes with private data, the older 24 without. */
export function pageResponseRecord(r: { grpid: number; code: number; pasid?: number; privateData?: [bigint, bigint] }): Uint8Array {
  const withData = r.privateData !== undefined;
  const size = withData ? 40 : 24;
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  v.setUint32(0, size, true);
  v.setUint32(4, 1, true);
  v.setUint32(8, (r.pasid !== undefined ? RESP_PASID_VALID : 0) | (withData ? RESP_PRIVATE_DATA : 0), true);
  v.setUint32(12, r.pasid ?? 0, true);
  v.setUint32(16, r.grpid, true);
  v.setUint32(20, r.code, true);
  if (r.privateData) {
    v.setBigUint64(24, r.privateData[0], true);
    v.setBigUint64(32, r.privateData[1], true);
  }
  return buf;
}

/**
 * A VMM serving `q`: whenever records arrive it reads them all and, for each page request with
 * LAST_PAGE, calls `resolve` for every request of its group (partials first) and writes one response
 * with the first non-zero code, naming the PASID and returning the private data (token) it was given.
 */
export function serveFaultQueue(q: IommuUserFaultQueue, resolve: (rec: UserFaultRecord) => number | Promise<number>): { seen: UserFaultRecord[]; errors: string[] } {
  const seen: UserFaultRecord[] = [];
  const errors: string[] = [];
  const partial: UserFaultRecord[] = [];
  let running = false;
  const drain = async (): Promise<void> => {
    if (running) return;
    running = true;
    try {
      for (let recs = readFaultRecords(q); recs.length > 0; recs = readFaultRecords(q)) {
        for (const rec of recs) {
          seen.push(rec);
          if (rec.type !== 2) continue;
          if ((rec.flags & REC_LAST_PAGE) === 0) {
            partial.push(rec);
            continue;
          }
          const group = [...partial.filter((p) => p.grpid === rec.grpid), rec];
          for (let i = partial.length - 1; i >= 0; i--) if (partial[i].grpid === rec.grpid) partial.splice(i, 1);
          let code = 0;
          for (const r of group) {
            code = await resolve(r);
            if (code !== 0) break;
          }
          try {
            q.write(
              pageResponseRecord({
                grpid: rec.grpid,
                code,
                pasid: (rec.flags & REC_PASID_VALID) !== 0 ? rec.pasid : undefined,
                privateData: (rec.flags & REC_PRIV_DATA) !== 0 ? rec.privateData : undefined,
              }),
            );
          } catch (e) {
            errors.push(e instanceof Error ? e.message : String(e));
          }
        }
      }
    } finally {
      running = false;
    }
  };
  q.onFault = () => {
    void drain();
  };
  return { seen, errors };
}
