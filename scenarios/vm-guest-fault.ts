/**
 * vm-guest-fault: the guest's engine writes to an IOVA its stage 1 does not map. The host SMMU
 * reports F_TRANSLATION for the physical StreamID; the host driver sees a nested master and hands the
 * record to the vIOMMU's vEVENTQ with the virtual StreamID; the VMM writes it into the guest's event
 * queue and injects the interrupt; the guest's driver reports F_TRANSLATION for vSID 0x10.
 */
import { findArmSmmuV3 } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { bootHostAndGuest, guestEngine, GUEST_VSID } from './lib/vm-lab.js';
import { Checks, type Scenario } from './scenario.js';
import { runIn, settle } from './smmu-v3-lab.js';

const BAD_IOVA = 0x1234_0000;

export const scenario: Scenario = {
  name: 'vm-guest-fault',
  shows: "a guest DMA fault is reported in the guest's event queue with its virtual StreamID, not on the host",
  async run(ctx) {
    const lab = await bootHostAndGuest({ seed: ctx.seed });
    const c = new Checks();
    const eng = guestEngine(lab);
    const hostBefore = lab.smmu.events.length;
    const st = await runIn(lab, eng.wait(eng.start({ op: 'fill', dst: BAD_IOVA, len: 64, byte: 1 })));
    await settle(lab, 2_000_000);
    const gsmmu = findArmSmmuV3(lab.guest.core, '/iommu@9050000');
    const ev = gsmmu.events.find((e) => e.name === 'F_TRANSLATION');
    c.equal('the guest DMA fails', st.state, 'error');
    c.ok('the guest driver reads F_TRANSLATION from its event queue', ev !== undefined);
    c.equal('with the virtual StreamID', ev?.sid, GUEST_VSID);
    c.equal('at the guest IOVA', ev?.addr, BAD_IOVA);
    const hostEv = lab.smmu.events.slice(hostBefore).find((e) => e.name === 'F_TRANSLATION');
    c.ok('the host driver forwarded it rather than dumping it', /reported to the guest/.test(hostEv?.outcome ?? ''), hostEv?.outcome);
    return c.result({ 'host SID': `0x${(hostEv?.sid ?? 0).toString(16)}`, 'guest SID': `0x${(ev?.sid ?? 0).toString(16)}`, 'events delivered': lab.vm.vsmmu.stats.eventsDelivered });
  },
};
