/**
 * Host + VMM + guest integration: the unchanged kernel boots on the VM's port, probes the vSMMUv3
 * through trapped MMIO, and its DMA API maps a buffer whose DMA goes through the guest's stage 1
 * and the host's stage 2.
 */
import { describe, expect, it } from 'vitest';
import { deviceOf, runIn, settle, V3 } from '../../scenarios/smmu-v3-lab.js';
import { bootHostAndGuest, guestEngine, GUEST_ENGINE_PATH, GUEST_PCI_FN, GUEST_STALL_ENGINE, GUEST_VSID, measureGuestUnmap } from '../../scenarios/lib/vm-lab.js';
import type { PciDevice } from '../../bus/pci/pci-device.js';
import { iommuDevEnableFeature } from '../../core/iommu.js';
import { iommuSvaBindDevice } from '../../core/iommu-sva.js';
import { PROT_READ, PROT_WRITE } from '../../mm/prot.js';
import { DEFAULT_TRAP_COSTS } from '../../vmm/trap-costs.js';
import { pciSetMaster } from '../../bus/pci/command.js';
import { dmaMapSingle, dmaUnmapSingle } from '../../core/dma-mapping.js';
import { findArmSmmuV3 } from '../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import type { ArmSmmuDomain } from '../../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import { CMDQ_0_OP, CMDQ_CFGI_0_SID, CMDQ_OP_ATC_INV, STRTAB_STE_1_EATS, CMDQ_OP_CFGI_STE, CMDQ_OP_TLBI_S2_IPA, STRTAB_STE_0_CFG, STRTAB_STE_2_S2VMID, STRTAB_STE_3_S2TTB_MASK } from '../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { iommuGroupGet } from '../../core/iommu-group.js';
import { bootKernel } from '../../kernel/kernel.js';
import { findTestEngine } from '../../drivers/misc/dma-test-engine.js';

const GUEST_SMMU = '/iommu@9050000';
import { armSmmuSteConfigName } from '../../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';

const HOST_SID = 0x101;

describe('a guest kernel over the VMM', () => {
  it('boots, probes its vSMMU and does DMA through nested translation: bytes land at the host PA behind the guest buffer', async () => {
    const lab = await bootHostAndGuest({ seed: 1 });
    const eng = guestEngine(lab);
    const buf = await runIn(lab, eng.allocBuffer(4096));
    const frame = eng.start({ op: 'fill', dst: buf.dma, len: 4096, byte: 0x5a });
    const st = await runIn(lab, eng.wait(frame));
    expect(st.state).toBe('done');
    const hostPa = lab.vm.ipaToPa(buf.cpuAddr);
    expect([...lab.machine.cpu.ram.read(hostPa, 16)]).toEqual(new Array(16).fill(0x5a));
    // The guest translates: its IOVA is not the IPA; the host STE is nested over the VM's stage 2.
    expect(buf.dma).not.toBe(buf.cpuAddr);
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(HOST_SID))).toBe('config 7');
    expect(lab.guest.core.probeOrder.map((d) => d.driver?.name)).toEqual(['arm-smmu-v3', 'dma-test-engine']);
    expect(lab.vm.vsmmu.stats.steInstalls).toBeGreaterThan(0);
    expect(lab.vm.vsmmu.stats.cerrorIll).toBe(0);
    // The guest's fwspec names the virtual StreamID.
    expect(eng.dev.fwspec?.ids).toEqual([GUEST_VSID]);
  });
});

describe('guest RAM above 2 GiB', () => {
  it('the vSMMU reads stream table and queue bases with address bit 31 set as the unsigned addresses they are', async () => {
    const lab = await bootHostAndGuest({ seed: 4, ramIpa: 0x8000_0000 });
    const gsmmu = findArmSmmuV3(lab.guest.core, GUEST_SMMU);
    // Everything the guest driver allocated sits above 2 GiB.
    expect(gsmmu.strtab.table.pa).toBeGreaterThanOrEqual(0x8000_0000);
    expect(gsmmu.cmdq.q.base).toBeGreaterThanOrEqual(0x8000_0000);
    const eng = guestEngine(lab);
    const buf = await runIn(lab, eng.allocBuffer(4096));
    const st = await runIn(lab, eng.wait(eng.start({ op: 'fill', dst: buf.dma, len: 4096, byte: 0xa7 })));
    expect(st.state).toBe('done');
    expect([...lab.machine.cpu.ram.read(lab.vm.ipaToPa(buf.cpuAddr), 8)]).toEqual(new Array(8).fill(0xa7));
    expect(lab.vm.vsmmu.stats.steInstalls).toBeGreaterThan(0);
    expect(lab.vm.vsmmu.stats.cerrorIll).toBe(0);
  });
});

describe('faults, hostile guests and teardown', () => {
  it('a guest DMA fault reaches the guest event queue with the virtual StreamID (the host does not log it)', async () => {
    const lab = await bootHostAndGuest({ seed: 2 });
    const eng = guestEngine(lab);
    const hostBefore = lab.smmu.events.length;
    const st = await runIn(lab, eng.wait(eng.start({ op: 'fill', dst: 0x1234_0000, len: 64, byte: 1 })));
    expect(st.state).toBe('error');
    await settle(lab, 2_000_000);
    const gsmmu = findArmSmmuV3(lab.guest.core, GUEST_SMMU);
    const ev = gsmmu.events.find((e) => e.name === 'F_TRANSLATION');
    expect(ev).toBeDefined();
    expect(ev!.sid).toBe(GUEST_VSID);
    expect(ev!.addr).toBe(0x1234_0000);
    expect(ev!.master).toBe(eng.dev.name);
    // The host read the record but gave it to the guest.
    const hostEv = lab.smmu.events.slice(hostBefore).find((e) => e.name === 'F_TRANSLATION');
    expect(hostEv?.outcome).toMatch(/reported to the guest as vSID 0x10/);
    expect(lab.vm.vsmmu.stats.eventsDelivered).toBeGreaterThan(0);
  });

  it('a guest STE with a stage 2 Config gets C_BAD_STE in the guest and an abort STE on the host; S2 fields in a stage 1 STE never reach the host', async () => {
    const lab = await bootHostAndGuest({ seed: 3 });
    const gsmmu = findArmSmmuV3(lab.guest.core, GUEST_SMMU);
    const ste = gsmmu.strtab.readSte(GUEST_VSID);
    // Forge the host-owned bits of a stage 1 STE: S2TTB and S2VMID, SHCFG.
    const forged = ste.slice();
    forged[4] = 0x7777;
    forged[6] = 0xdead_0000;
    forged[3] |= 1 << 12;
    // A hostile guest writes its table directly (its own driver's entry writer would refuse).
    const forgeSte = async (words: Uint32Array): Promise<void> => {
      const pa = gsmmu.strtab.stePa(GUEST_VSID);
      for (let w = 0; w < 16; w++) lab.vm.port.ram.write32(pa + 4 * w, words[w]);
      await runIn(lab, gsmmu.cmdq.issueCmdWithSync({ opcode: CMDQ_OP_CFGI_STE, cfgi: { sid: GUEST_VSID, ssid: 0, leaf: true } }));
    };
    await forgeSte(forged);
    const host = lab.smmu.strtab.readSte(HOST_SID);
    const parent = lab.vm.iommufd.hwpt(lab.vm.ids.s2).domain as ArmSmmuDomain;
    expect(armSmmuSteConfigName(host)).toBe('config 7');
    expect(STRTAB_STE_2_S2VMID.get(host)).toBe(parent.vmid);
    expect(STRTAB_STE_3_S2TTB_MASK.get(host)).toBe(parent.pgtblOps.armLpaeS2Cfg!.vttbr);
    // Config = nested (stage 2 bits) is ILLEGAL on the guest's stage-1-only SMMU.
    const bad = ste.slice();
    STRTAB_STE_0_CFG.set(bad, 7);
    const n = gsmmu.events.length;
    await forgeSte(bad);
    await settle(lab, 2_000_000);
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(HOST_SID))).toBe('abort');
    expect(gsmmu.events.slice(n).map((e) => [e.name, e.sid])).toContainEqual(['C_BAD_STE', GUEST_VSID]);
  });

  it('a command a stage-1-only SMMU does not have (TLBI_S2_IPA) is CERROR_ILL on the vSMMU; the guest driver skips it and goes on', async () => {
    const lab = await bootHostAndGuest({ seed: 4 });
    const gsmmu = findArmSmmuV3(lab.guest.core, GUEST_SMMU);
    const raw = new Uint32Array(4);
    raw[0] = CMDQ_OP_TLBI_S2_IPA;
    const r = await runIn(lab, gsmmu.cmdq.issueRaw(raw, true));
    expect(r).toBe(0);
    expect(lab.vm.vsmmu.stats.cerrorIll).toBe(1);
    expect(gsmmu.eventStats.gerrors).toBeGreaterThan(0);
    // DMA still works afterwards.
    const eng = guestEngine(lab);
    const buf = await runIn(lab, eng.allocBuffer(4096));
    expect((await runIn(lab, eng.wait(eng.start({ op: 'fill', dst: buf.dma, len: 64, byte: 3 })))).state).toBe('done');
  });

  it('guest shutdown, VM destroy: nested HWPTs, vDEVICE, vIOMMU and VMID freed, the device on its blocking domain; release gives it back', async () => {
    const lab = await bootHostAndGuest({ seed: 5 });
    const parent = lab.vm.iommufd.hwpt(lab.vm.ids.s2).domain as ArmSmmuDomain;
    const vmid = parent.vmid;
    await runIn(lab, lab.guest.shutdown());
    lab.guest.discard();
    await runIn(lab, lab.vm.destroy());
    const dev = deviceOf(lab, V3.engine);
    const group = iommuGroupGet(dev)!;
    expect(lab.smmu.vmidMap.has(vmid)).toBe(false);
    expect(group.domain).toBe(group.blockingDomain);
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(HOST_SID))).toBe('abort');
    expect(lab.vm.iommufd.objectCount).toBe(1);
    await runIn(lab, lab.vm.releaseDevices());
    expect(group.owner).toBeNull();
    expect(group.domain).toBe(group.defaultDomain);
  });

  it('kexec in the guest: a second guest kernel boots on the same VM and its DMA works', async () => {
    const lab = await bootHostAndGuest({ seed: 6 });
    await runIn(lab, lab.guest.shutdown());
    lab.guest.discard();
    const second = await runIn(lab, bootKernel({ cpu: lab.vm.port }, { instance: 1 }));
    const eng = findTestEngine(second.core, GUEST_ENGINE_PATH);
    const buf = await runIn(lab, eng.allocBuffer(4096));
    expect((await runIn(lab, eng.wait(eng.start({ op: 'fill', dst: buf.dma, len: 64, byte: 9 })))).state).toBe('done');
    expect(lab.machine.cpu.ram.read(lab.vm.ipaToPa(buf.cpuAddr), 1)[0]).toBe(9);
  });
});

describe('an assigned PCIe function', () => {
  it('the guest enumerates it through its trapped ECAM, maps a buffer with its DMA API, and the endpoint writes land at the host PA', async () => {
    const lab = await bootHostAndGuest({ seed: 7, pci: true, guestBootargs: 'iommu.strict=1' });
    const gdev = lab.guest.core.findDevice(GUEST_PCI_FN.name) as PciDevice | undefined;
    expect(gdev).toBeDefined();
    expect(gdev!.fwspec?.ids).toEqual([GUEST_PCI_FN.vsid]);
    // Other functions of the host are not in the guest.
    expect(lab.guest.core.findDevice('0000:00:02.0')).toBeUndefined();
    pciSetMaster(gdev!);
    const page = lab.guest.alloc.allocPages(0, { kind: 'dma', device: gdev!.name }, { zero: true });
    const iova = await runIn(lab, dmaMapSingle(gdev!, page, 4096, 'bidirectional'));
    expect(iova).not.toBe(page);
    const ep = lab.machine.endpoint(GUEST_PCI_FN.node)!;
    const c = await runIn(lab, ep.write(iova + 0x80, Uint8Array.of(1, 2, 3, 4)));
    expect(c.status).toBe('ok');
    expect([...lab.machine.cpu.ram.read(lab.vm.ipaToPa(page) + 0x80, 4)]).toEqual([1, 2, 3, 4]);
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(GUEST_PCI_FN.vsid))).toBe('config 7');
    // The guest asked for ATS (EATS in its STE): the host STE allows it; the guest's unmap flushes the
    // function's ATC through a forwarded ATC_INV with the physical StreamID.
    expect(STRTAB_STE_1_EATS.get(lab.smmu.strtab.readSte(GUEST_PCI_FN.vsid))).toBe(1);
    const seen: number[][] = [];
    lab.smmu.cmdq.onCommand = (w, off) => seen.push([CMDQ_0_OP.get(w, off), CMDQ_CFGI_0_SID.get(w, off)]);
    await runIn(lab, dmaUnmapSingle(gdev!, iova, 4096, 'bidirectional'));
    await settle(lab, 1_000_000);
    lab.smmu.cmdq.onCommand = null;
    expect(seen).toContainEqual([CMDQ_OP_ATC_INV, 0x8]);
  });
});

// Stalls and SVA in the guest (vm-guest-sva-stall) and PRI and SVA (vm-guest-sva-pri) are checked by
// their scenarios, which the catalogue test runs for several seeds.

describe('a VM killed with a transaction stalled', () => {
  it('destroy answers the pending stall (the host aborts it): nothing is left stalled, the master sees its transaction fail', async () => {
    const lab = await bootHostAndGuest({ seed: 10, stall: true });
    const gdev = lab.guest.core.findDevice(GUEST_STALL_ENGINE.guest)!;
    await runIn(lab, iommuDevEnableFeature(gdev, 'IOPF'));
    await runIn(lab, iommuDevEnableFeature(gdev, 'SVA'));
    const mm = lab.guest.processes.spawn().mm;
    const dst = mm.mmap(4096, PROT_READ | PROT_WRITE);
    const bond = await runIn(lab, iommuSvaBindDevice(gdev, mm));
    // The guest's driver is gone before it can answer: the VM is killed mid-fault.
    lab.vm.port.mmioWrite32(0x0905_0020, 0); // the guest turns its SMMU off (no CMD_RESUME will come)
    const host = lab.machine.masters.get(GUEST_STALL_ENGINE.host)!;
    const pending = host.write(dst, Uint8Array.of(1, 2, 3, 4), { ssid: bond.pasid });
    await settle(lab, 200_000);
    // The guest turning its SMMU off makes the vSMMU replace (and destroy) the nested HWPT the fault
    // waits on: its outstanding faults are answered then, as iommufd auto-responds on replace. Either
    // way nothing may be left for destroy to find stalled.
    expect(lab.model.stalls.count).toBeLessThanOrEqual(1);
    await runIn(lab, lab.vm.destroy());
    const c = await runIn(lab, pending);
    await settle(lab, 200_000);
    expect(c.status).not.toBe('ok');
    expect(lab.model.stalls.count).toBe(0);
    expect(lab.smmu.eventStats.resumeAbort).toBe(1);
  });
});

describe('trap costs', () => {
  it('are per VM: a slower exit makes each trapped guest unmap slower', async () => {
    const fast = await measureGuestUnmap(await bootHostAndGuest({ seed: 11, guestBootargs: 'iommu.strict=1' }), 1, 8);
    const slow = await measureGuestUnmap(await bootHostAndGuest({ seed: 11, guestBootargs: 'iommu.strict=1', trapCosts: { vmExitNs: 20_000 } }), 1, 8);
    expect(fast.ioctlsPerUnmap).toBe(1);
    expect(fast.usPerUnmap).toBeGreaterThan(DEFAULT_TRAP_COSTS.vmExitNs / 1000);
    expect(slow.usPerUnmap).toBeGreaterThan(fast.usPerUnmap + 16);
  });
});
