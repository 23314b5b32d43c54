/**
 * vm-guest-sva-stall: the guest binds a process to its stall-capable engine (SVA) and copies into
 * untouched memory through the PASID. Each write stalls on the host SMMU; the host driver hands the
 * stall to the nested HWPT's fault queue (a cookie, not the host STAG); the VMM gives the guest a
 * stall event with a STAG of its own; the guest's IOPF queue resolves the fault through the guest
 * process's mm and sends CMD_RESUME; the VMM answers the host fault queue by cookie and the host
 * resumes the transaction. (PRI, the PCIe analogue, is not offered to guests yet.)
 */
import { iommuDevEnableFeature } from '../core/iommu.js';
import { iommuSvaBindDevice } from '../core/iommu-sva.js';
import { findTestEngine } from '../drivers/misc/dma-test-engine.js';
import { findArmSmmuV3 } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { PROT_READ, PROT_WRITE } from '../mm/prot.js';
import { bootHostAndGuest, GUEST_STALL_ENGINE } from './lib/vm-lab.js';
import { Checks, type Scenario } from './scenario.js';
import { runIn, settle } from './smmu-v3-lab.js';

const PAGES = 4;

export const scenario: Scenario = {
  name: 'vm-guest-sva-stall',
  shows: "a guest SVA bind with stalls: the guest's mm resolves stalled host transactions through the forwarded fault queue",
  async run(ctx) {
    const lab = await bootHostAndGuest({ seed: ctx.seed, stall: true });
    const c = new Checks();
    const gdev = lab.guest.core.findDevice(GUEST_STALL_ENGINE.guest)!;
    await runIn(lab, iommuDevEnableFeature(gdev, 'IOPF'));
    await runIn(lab, iommuDevEnableFeature(gdev, 'SVA'));
    const mm = lab.guest.processes.spawn().mm;
    const src = mm.mmap(PAGES * 4096, PROT_READ | PROT_WRITE);
    const dst = mm.mmap(PAGES * 4096, PROT_READ | PROT_WRITE);
    const bytes = Uint8Array.from({ length: PAGES * 4096 }, (_, i) => (i * 5 + 1) & 0xff);
    mm.write(src, bytes);
    const bond = await runIn(lab, iommuSvaBindDevice(gdev, mm));
    const eng = findTestEngine(lab.guest.core, GUEST_STALL_ENGINE.guest);
    const before = lab.model.stats.stalled;
    const st = await runIn(lab, eng.wait(eng.start({ op: 'copy', src, dst, len: PAGES * 4096 }, { ssid: bond.pasid })));
    await settle(lab, 1_000_000);
    const gsmmu = findArmSmmuV3(lab.guest.core, '/iommu@9050000');
    c.equal('the copy completes', `${st.state}/${st.dmaStatus}`, 'done/ok');
    c.ok("the guest process reads the copy through its VA", mm.read(dst, PAGES * 4096).every((b, i) => b === bytes[i]));
    c.equal('each destination page stalled once on the host', lab.model.stats.stalled - before, PAGES);
    c.equal('the guest saw each stall with its vSID and PASID', gsmmu.events.filter((e) => e.stall).map((e) => [e.sid, e.ssid]), Array(PAGES).fill([GUEST_STALL_ENGINE.vsid, bond.pasid]));
    c.equal('the guest resumed each with retry', gsmmu.eventStats.resumeRetry, PAGES);
    c.equal('the host resumed each through its fault queue', lab.smmu.eventStats.resumeRetry, PAGES);
    c.equal('nothing is left stalled', lab.model.stalls.count, 0);
    return c.result({ PASID: bond.pasid, 'stalls forwarded': lab.vm.vsmmu.stats.stallsForwarded, 'responses by cookie': lab.vm.vsmmu.stats.stallsAnswered });
  },
};
