/**
 * smmu-v3-fault: a DMA write to an IOVA nobody mapped. The SMMU terminates it and records exactly one
 * F_TRANSLATION event carrying the master's StreamID and the IOVA; the driver's event thread decodes
 * it into a readable report; not a byte reaches memory.
 */
import { Checks, type Scenario } from './scenario.js';
import { allocPages, bootSmmuV3, engineJob, fillPhys, mapRange, ownDomain, readPhys, settle, V3 } from './smmu-v3-lab.js';

const SRC_IOVA = 0x1000_0000;
const UNMAPPED_IOVA = 0x3000_0000;
const ENGINE_SID = 0x101;

export const scenario: Scenario = {
  name: 'smmu-v3-fault',
  shows: 'a DMA write to an unmapped IOVA: one F_TRANSLATION event with the right StreamID and address, nothing written',
  async run(ctx) {
    const lab = await bootSmmuV3({ seed: ctx.seed });
    const c = new Checks();
    const domain = await ownDomain(lab, V3.engine);
    const src = allocPages(lab, 4096);
    // A page that would be the destination, deliberately not mapped anywhere.
    const victim = allocPages(lab, 4096);
    fillPhys(lab, src, 4096, 0x77);
    await mapRange(lab, domain, SRC_IOVA, src, 4096);
    const writesBefore = lab.model.stats.translated;
    const st = await engineJob(lab, V3.engine, { op: 'copy', src: SRC_IOVA, dst: UNMAPPED_IOVA, len: 4096 });
    await settle(lab);

    const events = lab.smmu.events.filter((e) => e.kind === 'event');
    const ev = events[0];
    c.equal('the engine reports the failed write', { state: st.state, write: st.faultWrite, addr: st.faultAddr }, { state: 'error', write: true, addr: UNMAPPED_IOVA });
    c.equal('exactly one event', events.map((e) => e.name), ['F_TRANSLATION']);
    c.equal('the event names the StreamID', ev?.sid, ENGINE_SID);
    c.equal('the event names the IOVA', ev?.addr, UNMAPPED_IOVA);
    c.equal('the event is a write, stage 1, input address class', ev && { write: ev.write, s2: ev.s2, cls: ev.cls, stall: ev.stall }, { write: true, s2: false, cls: 'IN', stall: false });
    c.ok(
      'the kernel log has the decoded report',
      lab.kernel.log.lines().some((l) => l.message.includes('F_TRANSLATION') && l.message.includes('SID 0x101') && l.message.includes('0x30000000')),
    );
    c.ok('not a byte was written', readPhys(lab, victim, 4096).every((b) => b === 0));
    c.equal('only the source read was translated', lab.model.stats.translated - writesBefore, 1);
    c.equal('the SMMU terminated one transaction', lab.model.stats.faulted, 1);
    return c.result({ events: events.length, sid: `0x${(ev?.sid ?? 0).toString(16)}`, address: `0x${(ev?.addr ?? 0).toString(16)}` });
  },
};
