/**
 * vm-guest-dma: a host kernel on virt gives a guest the SMMUv3's platform DMA test engine (vSID 0x10)
 * and the PCIe function 00:01.0 (vSID = RID 0x8). The unchanged guest kernel boots on the VMM's port,
 * probes its emulated SMMUv3 through trapped MMIO and maps buffers with its DMA API: the engine's and
 * the endpoint's DMA go through the guest's stage 1 and the host's stage 2 (a nested STE with the
 * VM's VMID) and the bytes land at the host page behind the guest buffer.
 */
import { dmaMapSingle } from '../core/dma-mapping.js';
import { pciSetMaster } from '../bus/pci/command.js';
import type { PciDevice } from '../bus/pci/pci-device.js';
import type { ArmSmmuDomain } from '../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import { STRTAB_STE_2_S2VMID } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuSteConfigName } from '../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { bootHostAndGuest, guestEngine, GUEST_PCI_FN } from './lib/vm-lab.js';
import { Checks, type Scenario } from './scenario.js';
import { runIn } from './smmu-v3-lab.js';

const HOST_ENGINE_SID = 0x101;

export const scenario: Scenario = {
  name: 'vm-guest-dma',
  shows: 'a guest kernel over the VMM does DMA (platform engine and PCIe function) through guest S1 over host S2; bytes land at the host PA',
  async run(ctx) {
    const lab = await bootHostAndGuest({ seed: ctx.seed, pci: true });
    const c = new Checks();
    c.equal('the guest bound its vSMMU and the engine', lab.guest.core.probeOrder.map((d) => d.driver?.name ?? null).slice(0, 2), ['arm-smmu-v3', 'dma-test-engine']);
    const eng = guestEngine(lab);
    const buf = await runIn(lab, eng.allocBuffer(4096));
    const st = await runIn(lab, eng.wait(eng.start({ op: 'fill', dst: buf.dma, len: 4096, byte: 0x5a })));
    const hostPa = lab.vm.ipaToPa(buf.cpuAddr);
    c.equal('engine: the fill completes', `${st.state}/${st.dmaStatus}`, 'done/ok');
    c.ok('engine: the guest translates (IOVA differs from the IPA)', buf.dma !== buf.cpuAddr);
    c.ok('engine: the bytes are at the host page behind the guest buffer', lab.machine.cpu.ram.read(hostPa, 4096).every((b) => b === 0x5a));
    const ste = lab.smmu.strtab.readSte(HOST_ENGINE_SID);
    const s2 = lab.vm.iommufd.hwpt(lab.vm.ids.s2).domain as ArmSmmuDomain;
    c.equal('host STE of the engine is nested', armSmmuSteConfigName(ste), 'config 7');
    c.equal("host STE carries the VM's VMID", STRTAB_STE_2_S2VMID.get(ste), s2.vmid);

    const pdev = lab.guest.core.findDevice(GUEST_PCI_FN.name) as PciDevice | undefined;
    c.ok('the guest enumerated the assigned PCIe function', pdev !== undefined);
    let pciOk = false;
    if (pdev) {
      pciSetMaster(pdev);
      const page = lab.guest.alloc.allocPages(0, { kind: 'dma', device: pdev.name }, { zero: true });
      const iova = await runIn(lab, dmaMapSingle(pdev, page, 4096, 'bidirectional'));
      const w = await runIn(lab, lab.machine.endpoint(GUEST_PCI_FN.node)!.write(iova + 0x40, Uint8Array.of(0xde, 0xad)));
      pciOk = w.status === 'ok' && lab.machine.cpu.ram.read(lab.vm.ipaToPa(page) + 0x40, 2).join() === '222,173';
    }
    c.ok('PCIe: the endpoint write lands at the host page behind the guest page', pciOk);
    c.equal('no command was illegal', lab.vm.vsmmu.stats.cerrorIll, 0);
    return c.result({
      VMID: s2.vmid,
      'guest IOVA': `0x${buf.dma.toString(16)}`,
      'guest IPA': `0x${buf.cpuAddr.toString(16)}`,
      'host PA': `0x${hostPa.toString(16)}`,
      'vSMMU traps': lab.vm.vsmmu.stats.traps,
      'ioctls': lab.vm.vsmmu.stats.ioctls,
    });
  },
};
