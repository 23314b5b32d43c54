/**
 * sva-stall: Shared Virtual Addressing for a stall-capable platform master on the SMMUv3 (the DMA
 * test engine with `dma-can-stall` and 8 PASID bits). The engine copies a buffer the CPU filled into a
 * fresh, untouched mmap through its SubstreamID: each destination page misses, the SMMU stalls the
 * write and records a stall event, the event thread reports it, the IOPF queue's SVA handler faults
 * the page in through the mm and the driver answers CMD_RESUME retry; the write completes and the CPU
 * reads the copy through the process VA.
 *
 * Also: a write outside every VMA is aborted (RESUME abort, the engine sees the failure); and the mm
 * exits while the engine is still writing: the PASID's CD turns quiet (the writes abort without a
 * stream of events), the device driver's mm_exit callback stops the engine, unbind detaches, nothing
 * stays stalled, and the PASID is free once the mm is gone.
 */
import { iommuSvaBindDevice, iommuSvaUnbindDevice } from '../core/iommu-sva.js';
import { CTXDESC_CD_0_R, CTXDESC_CD_0_S, CTXDESC_CD_0_TCR_EPD0, CTXDESC_CD_0_V } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuV3MasterOf } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { PROT_READ, PROT_WRITE } from '../mm/prot.js';
import { Checks, type Scenario } from './scenario.js';
import { bootSmmuV3, deviceOf, engineJob, engineOf, runIn, settle } from './smmu-v3-lab.js';
import { enableIopf, PAGE, STALL_ENGINE_V3 } from './sva-lab.js';

const PAGES = 4;
const OUTSIDE = 0x7000_0000;

export const scenario: Scenario = {
  name: 'sva-stall',
  shows: 'SVA with stall on the SMMUv3: stalled writes into a fresh mmap are resolved through the mm and resumed; mm exit mid-DMA leaves nothing stalled',
  async run(ctx) {
    const lab = await bootSmmuV3({ seed: ctx.seed });
    const c = new Checks();
    const dev = deviceOf(lab, STALL_ENGINE_V3);
    const master = armSmmuV3MasterOf(dev)!;
    await enableIopf(lab, dev);
    c.ok('the master stalls', master.stallEnabled);

    // 1. Copy into untouched memory.
    const proc = lab.kernel.processes.spawn();
    const mm = proc.mm;
    const src = mm.mmap(PAGES * PAGE, PROT_READ | PROT_WRITE);
    const dst = mm.mmap(PAGES * PAGE, PROT_READ | PROT_WRITE);
    const bytes = Uint8Array.from({ length: PAGES * PAGE }, (_, i) => (i * 7 + 3) & 0xff);
    mm.write(src, bytes);
    c.ok('the destination is untouched', Array.from({ length: PAGES }, (_, i) => mm.translate(dst + i * PAGE)).every((pa) => pa === null));
    const bond = await runIn(lab, iommuSvaBindDevice(dev, mm), 'bind');
    const pasid = bond.pasid;
    c.ok('the PASID fits the engine\'s 8 bits', pasid >= 1 && pasid < 256);
    c.ok('its CD stalls (S = 1)', CTXDESC_CD_0_S.isSet(master.cdTable!.readCd(pasid)));
    const stalledBefore = lab.model.stats.stalled;
    const copy = await engineJob(lab, STALL_ENGINE_V3, { op: 'copy', src, dst, len: PAGES * PAGE }, { ssid: pasid });
    await settle(lab);
    c.equal('the copy completes', { state: copy.state, dma: copy.dmaStatus }, { state: 'done', dma: 'ok' });
    c.equal('each destination page stalled once', lab.model.stats.stalled - stalledBefore, PAGES);
    c.equal('each was resumed with retry', { retry: lab.smmu.eventStats.resumeRetry, abort: lab.smmu.eventStats.resumeAbort }, { retry: PAGES, abort: 0 });
    const seen = mm.read(dst, PAGES * PAGE);
    c.ok('the CPU reads the copy through the process VA', seen.every((b, i) => b === bytes[i]));
    c.equal('the stall events carried the PASID', lab.smmu.events.filter((e) => e.stall).map((e) => e.ssid), Array(PAGES).fill(pasid));

    // 2. Outside every VMA: aborted.
    const outside = await engineJob(lab, STALL_ENGINE_V3, { op: 'fill', dst: OUTSIDE, len: 64, byte: 0xee }, { ssid: pasid });
    await settle(lab);
    c.equal('a write outside any VMA fails in the engine', outside.state, 'error');
    c.equal('answered with RESUME abort', lab.smmu.eventStats.resumeAbort, 1);

    // 3. The mm exits while the engine keeps writing.
    const engine = engineOf(lab, STALL_ENGINE_V3);
    const proc2 = lab.kernel.processes.spawn();
    const mm2 = proc2.mm;
    const target = mm2.mmap(PAGE, PROT_READ | PROT_WRITE);
    let frame = -1;
    const exits: { pasid: number; drvdata: unknown; eventsWhileStopping: number; state: string }[] = [];
    const bond2 = await runIn(
      lab,
      iommuSvaBindDevice(dev, mm2, {
        drvdata: 'engine context 2',
        // The device driver is told and stops its device; that takes it a while.
        mmExit: async (_dev, p, drvdata) => {
          const ev = lab.smmu.events.length;
          await lab.machine.scheduler.delay(20_000);
          exits.push({ pasid: p, drvdata, eventsWhileStopping: lab.smmu.events.length - ev, state: engine.status(frame).dmaStatus });
          await engine.stop(frame);
        },
      }),
      'bind 2',
    );
    const pasid2 = bond2.pasid;
    frame = engine.start({ op: 'periodic', dst: target, len: 64, pattern: 0x5c, periodNs: 1000 }, { ssid: pasid2 });
    await settle(lab, 10_000);
    c.ok('the engine writes the process memory', engine.status(frame).state === 'running' && engine.status(frame).iterations > 1);
    await runIn(lab, proc2.exit(), 'exit while DMA runs');
    c.equal('the driver\'s mm_exit callback ran once, with its PASID and data', exits.map((e) => [e.pasid, e.drvdata]), [[pasid2, 'engine context 2']]);
    const quiet = master.cdTable!.readCd(pasid2);
    c.ok('the PASID\'s CD is quiet: valid, EPD0, no stall, no record', CTXDESC_CD_0_V.isSet(quiet) && CTXDESC_CD_0_TCR_EPD0.isSet(quiet) && !CTXDESC_CD_0_S.isSet(quiet) && !CTXDESC_CD_0_R.isSet(quiet));
    c.ok('the writes after it aborted', exits[0]?.state !== 'ok' && exits[0]?.state !== undefined, JSON.stringify(exits));
    c.equal('without an event storm', exits[0]?.eventsWhileStopping, 0);
    c.equal('nothing is stalled', lab.model.stalls.count, 0);
    c.ok('the PASID stays while the bond holds the mm', lab.kernel.iommu.globalPasids.has(pasid2) && mm2.state === 'exited');
    await runIn(lab, iommuSvaUnbindDevice(bond2), 'unbind 2');
    c.ok('after unbind the mm is gone and its PASID free', mm2.state === 'freed' && !lab.kernel.iommu.globalPasids.has(pasid2));
    c.equal('still nothing stalled', lab.model.stalls.count, 0);

    await runIn(lab, iommuSvaUnbindDevice(bond), 'unbind');
    await runIn(lab, proc.exit(), 'exit');
    c.ok('the first PASID is free too', !lab.kernel.iommu.globalPasids.has(pasid));
    return c.result({ stalls: lab.model.stats.stalled, 'RESUME retry': lab.smmu.eventStats.resumeRetry, 'RESUME abort': lab.smmu.eventStats.resumeAbort });
  },
};
