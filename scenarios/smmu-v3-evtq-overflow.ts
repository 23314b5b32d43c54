/**
 * smmu-v3-evtq-overflow: more faults at once than the event queue holds. The SMMU writes what fits,
 * drops the rest and toggles EVTQ_PROD.OVFLG; the driver's event thread drains the queue, says
 * "EVTQ overflow detected -- events lost", and acknowledges the overflow through EVTQ_CONS.OVACKFLG,
 * after which events are recorded again.
 */
import { ARM_SMMU_EVTQ_CONS, ARM_SMMU_EVTQ_PROD, Q_OVERFLOW_FLAG } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { Checks, type Scenario } from './scenario.js';
import { bootSmmuV3, ownDomain, runIn, settle, V3 } from './smmu-v3-lab.js';

/** A 4-entry event queue (IDR1.EVENTQS = 2). */
const EVTQ_LOG2 = 2;
const FAULTS = 20;
const BASE_IOVA = 0x4000_0000;

export const scenario: Scenario = {
  name: 'smmu-v3-evtq-overflow',
  shows: 'a burst of faults overflows a 4-entry event queue: the driver reports the loss, acknowledges OVFLG, and recovers',
  async run(ctx) {
    const lab = await bootSmmuV3({ seed: ctx.seed, smmu: { evtqLog2: EVTQ_LOG2 } });
    const c = new Checks();
    await ownDomain(lab, V3.engine);
    const master = lab.machine.master(V3.engine)!;
    c.equal('the driver sized the event queue from IDR1', lab.smmu.evtq.entries, 1 << EVTQ_LOG2);

    // Every read below misses: FAULTS records in one burst.
    const burst = Array.from({ length: FAULTS }, (_, i) => master.read(BASE_IOVA + i * 0x1000, 8));
    const results = await runIn(lab, Promise.all(burst), 'fault burst');
    await settle(lab);
    const recorded = lab.smmu.events.length;
    const lost = lab.model.events.stats.overflowed;
    c.ok('every read failed', results.every((r) => r.status !== 'ok'));
    c.ok('some records were lost', lost > 0, `overflowed ${lost}`);
    c.equal('what was written plus what was lost is every fault', recorded + lost, FAULTS);
    c.equal('the driver saw the overflow', lab.smmu.eventStats.evtqOverflows, 1);
    c.ok('and said so', lab.kernel.log.lines('err').some((l) => l.message === 'EVTQ overflow detected -- events lost'));
    const prod = lab.model.peek32(ARM_SMMU_EVTQ_PROD);
    const cons = lab.model.peek32(ARM_SMMU_EVTQ_CONS);
    c.ok('the overflow happened (PROD.OVFLG toggled)', (prod & Q_OVERFLOW_FLAG) !== 0);
    c.equal('and was acknowledged (CONS.OVACKFLG == PROD.OVFLG)', cons & Q_OVERFLOW_FLAG, prod & Q_OVERFLOW_FLAG);

    // After the acknowledgement, records are written again.
    const again = await runIn(lab, master.read(BASE_IOVA + FAULTS * 0x1000, 8), 'one more fault');
    await settle(lab);
    c.ok('a later fault fails too', again.status !== 'ok');
    c.equal('and is recorded again', lab.smmu.events.length, recorded + 1);
    c.equal('no second overflow', lab.smmu.eventStats.evtqOverflows, 1);
    return c.result({ faults: FAULTS, recorded, lost });
  },
};
