/**
 * smmu-v3-ats: a PCIe endpoint with ATS behind the SMMUv3. The driver enables ATS in the function when
 * it attaches a paging domain (STE.EATS = 1); the endpoint asks the SMMU to translate, caches the
 * answer in its ATC and sends translated transactions. When the IOVA is unmapped the driver follows
 * the TLBI with a CMD_ATC_INV for the master, and its CMD_SYNC waits for the endpoint to complete the
 * invalidation, so the stale ATC entry is gone before unmap returns.
 */
import { pciSetMaster } from '../bus/pci/command.js';
import { PciDevice } from '../bus/pci/pci-device.js';
import { armSmmuV3MasterOf } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { CMDQ_0_OP, CMDQ_ATC_0_SID, CMDQ_ATC_1_ADDR_MASK, CMDQ_ATC_1_SIZE, CMDQ_OP_ATC_INV, CMDQ_OP_CMD_SYNC, STRTAB_STE_1_EATS } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { Checks, type Scenario } from './scenario.js';
import { allocPages, bootSmmuV3, deviceOf, fillPhys, mapRange, ownDomain, runIn, unmapRange, V3 } from './smmu-v3-lab.js';

const ACCEL_NODE = '/pcie@3f000000/accel@1,0';
const ACCEL_SID = 0x08;
const IOVA = 0x5000_0000;

export const scenario: Scenario = {
  name: 'smmu-v3-ats',
  shows: 'ATS: the endpoint caches SMMU translations in its ATC; unmap sends CMD_ATC_INV and waits for it',
  async run(ctx) {
    const lab = await bootSmmuV3({ seed: ctx.seed });
    const c = new Checks();
    const pdev = deviceOf(lab, V3.accel) as PciDevice;
    const ep = lab.machine.endpoint(ACCEL_NODE)!;
    pciSetMaster(pdev);
    const master = armSmmuV3MasterOf(pdev)!;
    c.ok('ATS is on with the default domain', master.atsEnabled && pdev.features.atsEnabled && ep.atsEnabled);
    c.equal('STE.EATS allows translation requests', STRTAB_STE_1_EATS.get(lab.smmu.strtab.readSte(ACCEL_SID)), 1);

    const domain = await ownDomain(lab, V3.accel);
    const pa = allocPages(lab, 4096);
    fillPhys(lab, pa, 4096, 0x99);
    await mapRange(lab, domain, IOVA, pa, 4096);
    c.ok('ATS stays on with the new domain', master.atsEnabled && ep.atsEnabled);

    const trBefore = ep.atsStats.translationRequests;
    const r1 = await runIn(lab, ep.read(IOVA + 0x40, 64), 'endpoint read');
    c.ok('the endpoint reads through ATS', r1.status === 'ok' && (r1.data ?? new Uint8Array()).every((b) => b === 0x99), r1.detail);
    c.equal('one translation request', ep.atsStats.translationRequests - trBefore, 1);
    c.ok('the ATC caches the page', ep.atcContents.some((e) => e.base <= IOVA && IOVA < e.base + e.size && e.pa === pa));
    const r2 = await runIn(lab, ep.read(IOVA + 0x80, 64), 'endpoint read again');
    c.ok('a second read hits the ATC (no new request)', r2.status === 'ok' && ep.atsStats.translationRequests - trBefore === 1);

    const cmds: { op: number; sid: number; addr: number; size: number }[] = [];
    lab.smmu.cmdq.onCommand = (w, off) => {
      const op = CMDQ_0_OP.get(w, off);
      cmds.push(op === CMDQ_OP_ATC_INV ? { op, sid: CMDQ_ATC_0_SID.get(w, off), addr: CMDQ_ATC_1_ADDR_MASK.get(w, off), size: CMDQ_ATC_1_SIZE.get(w, off) } : { op, sid: 0, addr: 0, size: 0 });
    };
    const invBefore = ep.atsStats.invalidations;
    await unmapRange(lab, domain, IOVA, 4096);
    lab.smmu.cmdq.onCommand = null;
    const atc = cmds.findIndex((x) => x.op === CMDQ_OP_ATC_INV);
    c.ok('unmap issued CMD_ATC_INV for the endpoint and the page', atc >= 0 && cmds[atc].sid === ACCEL_SID && cmds[atc].addr === IOVA && cmds[atc].size === 0, JSON.stringify(cmds));
    c.ok('followed by a CMD_SYNC', cmds.slice(atc + 1).some((x) => x.op === CMDQ_OP_CMD_SYNC));
    c.equal('the endpoint completed one invalidation before unmap returned', ep.atsStats.invalidations - invBefore, 1);
    c.ok('its ATC no longer holds the page', !ep.atcContents.some((e) => e.base <= IOVA && IOVA < e.base + e.size));
    const r3 = await runIn(lab, ep.read(IOVA, 64), 'read after unmap');
    c.ok('a read after unmap fails', r3.status !== 'ok', r3.status);
    return c.result({ 'translation requests': ep.atsStats.translationRequests, 'ATC invalidations': ep.atsStats.invalidations });
  },
};
