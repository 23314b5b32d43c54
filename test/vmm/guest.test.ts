/**
 * Host + VMM + guest integration: the unchanged kernel boots on the VM's port, probes the vSMMUv3
 * through trapped MMIO, and its DMA API maps a buffer whose DMA goes through the guest's stage 1
 * and the host's stage 2.
 */
import { describe, expect, it } from 'vitest';
import { runIn } from '../../scenarios/smmu-v3-lab.js';
import { bootHostAndGuest, guestEngine, GUEST_VSID } from '../../scenarios/lib/vm-lab.js';
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
