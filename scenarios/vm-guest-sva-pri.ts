/**
 * vm-guest-sva-pri: the guest binds a process to the assigned PCIe function (ATS, PRI, PASID) and the
 * function writes into the process's untouched pages through the PASID. Each page faults: the
 * endpoint's page request reaches the host's PRI queue, the host driver hands it to the nested HWPT's
 * fault queue under a cookie, the VMM puts it in the guest's PRI queue with a PRG index of its own,
 * the guest's IOPF queue resolves it through the guest process's mm and answers CMD_PRI_RESP, and the
 * VMM answers the host's fault queue by cookie: the host sends PRI_RESP with the device's PRG index.
 */
import { pciSetMaster } from '../bus/pci/command.js';
import type { PciDevice } from '../bus/pci/pci-device.js';
import { iommuDevEnableFeature } from '../core/iommu.js';
import { iommuSvaBindDevice } from '../core/iommu-sva.js';
import { findArmSmmuV3 } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { PROT_READ, PROT_WRITE } from '../mm/prot.js';
import { bootHostAndGuest, GUEST_PCI_FN } from './lib/vm-lab.js';
import { Checks, type Scenario } from './scenario.js';
import { runIn, settle } from './smmu-v3-lab.js';

const PAGES = 4;
const pattern = (p: number, i: number): number => (p * 17 + i) & 0xff;

export const scenario: Scenario = {
  name: 'vm-guest-sva-pri',
  shows: "a guest SVA bind with PRI: the guest's mm resolves the device's page requests through the forwarded fault queue",
  async run(ctx) {
    const lab = await bootHostAndGuest({ seed: ctx.seed, pci: true });
    const c = new Checks();
    const gdev = lab.guest.core.findDevice(GUEST_PCI_FN.name) as PciDevice;
    pciSetMaster(gdev);
    await runIn(lab, iommuDevEnableFeature(gdev, 'IOPF'));
    await runIn(lab, iommuDevEnableFeature(gdev, 'SVA'));
    const mm = lab.guest.processes.spawn().mm;
    const buf = mm.mmap(PAGES * 4096, PROT_READ | PROT_WRITE);
    const bond = await runIn(lab, iommuSvaBindDevice(gdev, mm));
    const ep = lab.machine.endpoint(GUEST_PCI_FN.node)!;
    const data = (p: number): Uint8Array => Uint8Array.from({ length: 4096 }, (_, i) => pattern(p, i));
    const res = await runIn(lab, Promise.all(Array.from({ length: PAGES }, (_, p) => ep.write(buf + p * 4096, data(p), { ssid: bond.pasid }))));
    await settle(lab, 1_000_000);
    const gsmmu = findArmSmmuV3(lab.guest.core, '/iommu@9050000');
    c.equal('every write completed', res.map((r) => r.status), Array(PAGES).fill('ok'));
    c.equal('each page faulted once (one page request each)', ep.atsStats.pageRequests, PAGES);
    c.equal('the guest read them from its PRI queue with the vSID and PASID', gsmmu.events.filter((e) => e.kind === 'page-request').map((e) => [e.sid, e.ssid]), Array(PAGES).fill([GUEST_PCI_FN.vsid, bond.pasid]));
    c.equal('the guest answered each', gsmmu.eventStats.priResponses, PAGES);
    c.equal('the host answered the device for each', lab.smmu.eventStats.priResponses, PAGES);
    const cpu = mm.read(buf, PAGES * 4096);
    c.ok("the guest process reads the device's bytes", cpu.every((b, i) => b === pattern(Math.floor(i / 4096), i % 4096)));
    return c.result({ PASID: bond.pasid, 'page requests': lab.vm.vsmmu.stats.pageRequestsForwarded, 'responses by cookie': lab.vm.vsmmu.stats.pageResponses });
  },
};
