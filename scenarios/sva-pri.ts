/**
 * sva-pri: Shared Virtual Addressing over PCIe. The accelerator endpoint (ATS, PRI, PASID) is bound to
 * a process; the SMMUv3 walks the process's own page tables through the CD of the bond's PASID. The
 * endpoint writes into a fresh, untouched mmap: each page's ATS translation grants nothing, the
 * endpoint sends one page request, the PRI thread reports it, the IOPF queue's SVA handler faults the
 * page in through the mm and the driver answers PRI_RESP Success; the endpoint translates again and
 * writes. The CPU then reads the device's bytes through the process's VA.
 *
 * Also: a write outside every VMA gets Invalid Request and the device sees the failure; a three-request
 * group (LAST on the third) is handled once, with one response; munmap and mprotect reach the SMMU's
 * TLB and the endpoint's ATC through the SVA domain's mmu notifier; a process that exits while bound
 * gets a quiet CD and Invalid page requests; after unbind and exit the PASID is free.
 */
import { iommuSvaBindDevice, iommuSvaUnbindDevice } from '../core/iommu-sva.js';
import { devFaultParam } from '../core/io-pgfault.js';
import {
  CMDQ_0_OP,
  CMDQ_ATC_0_SID,
  CMDQ_ATC_0_SSID,
  CMDQ_ATC_1_ADDR_MASK,
  CMDQ_ATC_1_SIZE,
  CMDQ_OP_ATC_INV,
  CMDQ_OP_TLBI_NH_VA,
  CMDQ_TLBI_0_ASID,
  CMDQ_TLBI_1_VA_MASK,
  CTXDESC_CD_0_ASID,
  CTXDESC_CD_0_TCR_EPD0,
  CTXDESC_CD_0_V,
  CTXDESC_CD_1_TTB0_MASK,
  PRI_RESP_DENY,
  PRI_RESP_SUCC,
} from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuAsidSpace } from '../drivers/arm-smmu-v3/arm-smmu-v3-asid.js';
import { armSmmuV3MasterOf } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { PROT_READ, PROT_WRITE } from '../mm/prot.js';
import { Checks, type Scenario } from './scenario.js';
import { bootSmmuV3, runIn, settle } from './smmu-v3-lab.js';
import { ACCEL, accel, enableIopf, PAGE, watchResponses } from './sva-lab.js';

const PAGES = 8;
/** A group index the endpoint itself will not use while this runs. */
const INJECTED_PRG = 0x1f0;
/** An address no VMA covers. */
const OUTSIDE = 0x7000_0000;

/** The byte the device writes at offset `i` of page `p`. */
const patternByte = (p: number, i: number): number => (p * 31 + i) & 0xff;

export const scenario: Scenario = {
  name: 'sva-pri',
  shows: 'SVA over PCIe PRI: every untouched page faults once, the IOPF queue resolves it through the mm, the CPU reads the device bytes',
  async run(ctx) {
    const lab = await bootSmmuV3({ seed: ctx.seed });
    const c = new Checks();
    const { pdev, ep } = accel(lab);
    await enableIopf(lab, pdev);
    const master = armSmmuV3MasterOf(pdev)!;
    c.ok('IOPF turned PRI on in the function', master.priEnabled && ep.priEnabled);

    const proc = lab.kernel.processes.spawn();
    const mm = proc.mm;
    const buf = mm.mmap(PAGES * PAGE, PROT_READ | PROT_WRITE);
    const more = mm.mmap(3 * PAGE, PROT_READ | PROT_WRITE);
    c.equal('the mapping is untouched (RSS 0)', mm.rss, 0);
    const bond = await runIn(lab, iommuSvaBindDevice(pdev, mm), 'bind');
    const pasid = bond.pasid;
    c.ok('the bond has a PASID from the global space', pasid >= 1 && pasid < 2 ** 20);
    const cd = master.cdTable!.readCd(pasid);
    c.ok('the PASID CD is valid and walks the process page table', CTXDESC_CD_0_V.isSet(cd) && CTXDESC_CD_1_TTB0_MASK.get(cd) === mm.pgd);
    const asid = CTXDESC_CD_0_ASID.get(cd);
    c.ok('with the process\'s CPU ASID, reserved in the SMMU\'s ASID space', asid === mm.asid && armSmmuAsidSpace(lab.kernel.core).has(asid));

    // 1. The device writes every page of the fresh mapping, all at once.
    const watch = watchResponses(lab);
    const data = (p: number): Uint8Array => Uint8Array.from({ length: PAGE }, (_, i) => patternByte(p, i));
    const results = await runIn(
      lab,
      Promise.all(Array.from({ length: PAGES }, (_, p) => ep.write(buf + p * PAGE, data(p), { ssid: pasid }))),
      'endpoint writes',
    );
    await settle(lab);
    c.equal('every write completed', results.map((r) => r.status), Array(PAGES).fill('ok'));
    c.equal('each page faulted exactly once (one page request per page)', ep.atsStats.pageRequests, PAGES);
    const succ = watch.list.filter((r) => r.op === 'PRI_RESP' && r.resp === PRI_RESP_SUCC && r.ssid === pasid);
    c.equal('each answered with one PRI_RESP Success for the PASID', succ.length, PAGES);
    c.equal('the pages are the process\'s now', mm.rss, PAGES);
    const cpu = mm.read(buf, PAGES * PAGE);
    let bad = -1;
    for (let i = 0; i < cpu.length && bad < 0; i++) if (cpu[i] !== patternByte(Math.floor(i / PAGE), i % PAGE)) bad = i;
    c.ok('the CPU reads the device\'s bytes through the process VA', bad < 0, bad < 0 ? undefined : `first bad byte at offset ${bad}`);

    // Faulted in once: writing again asks for nothing.
    const again = await runIn(lab, ep.write(buf + 3 * PAGE + 100, Uint8Array.of(0xab), { ssid: pasid }), 'write again');
    c.ok('a second write needs no page request', again.status === 'ok' && ep.atsStats.pageRequests === PAGES);
    c.equal('and lands where the CPU sees it', mm.read(buf + 3 * PAGE + 100, 1)[0], 0xab);

    // 2. Outside every VMA: Invalid Request, the device sees the failure.
    const outside = await runIn(lab, ep.write(OUTSIDE, Uint8Array.of(1, 2, 3), { ssid: pasid }), 'write outside');
    await settle(lab);
    c.equal('a write outside any VMA fails in the device', outside.status, 'fault');
    const deny = watch.list.filter((r) => r.op === 'PRI_RESP' && r.resp === PRI_RESP_DENY);
    c.equal('answered with PRI_RESP Invalid (never Failure)', deny.length, 1);
    c.equal('the SVA handler counted one INVALID', devFaultParam(pdev)!.stats.invalid, 1);

    // 3. A three-request group, LAST on the third: handled once.
    const groupsBefore = devFaultParam(pdev)!.stats.groups;
    const respBefore = watch.list.length;
    for (let i = 0; i < 3; i++) {
      lab.model.pageRequest({
        master: ep.name,
        streamId: 0x08,
        ssid: pasid,
        ssidValid: true,
        addr: more + i * PAGE,
        read: true,
        write: true,
        exec: false,
        priv: false,
        prgIndex: INJECTED_PRG,
        last: i === 2,
      });
    }
    await settle(lab);
    const groupResp = watch.list.slice(respBefore);
    c.equal('the group got exactly one response', groupResp, [{ op: 'PRI_RESP', grpid: INJECTED_PRG, ssid: pasid, resp: PRI_RESP_SUCC }]);
    c.equal('the IOPF queue handled one group', devFaultParam(pdev)!.stats.groups - groupsBefore, 1);
    c.ok('all three pages of the group are mapped', [0, 1, 2].every((i) => mm.translate(more + i * PAGE) !== null));
    watch.stop();

    // 4. The mm changes under the device: its mmu notifier turns them into TLBI + ATC_INV.
    const page5 = buf + 5 * PAGE;
    const reqBefore = ep.atsStats.pageRequests;
    const invBefore = ep.atsStats.invalidations;
    // The invalidations the notifier issues, as the command queue carries them.
    const inv: { op: string; a: number; b: number; addr: number; size: number }[] = [];
    const prevOnCommand = lab.smmu.cmdq.onCommand;
    lab.smmu.cmdq.onCommand = (w, off) => {
      prevOnCommand?.(w, off);
      const op = CMDQ_0_OP.get(w, off);
      if (op === CMDQ_OP_TLBI_NH_VA) inv.push({ op: 'TLBI_NH_VA', a: CMDQ_TLBI_0_ASID.get(w, off), b: 0, addr: CMDQ_TLBI_1_VA_MASK.get(w, off), size: 0 });
      else if (op === CMDQ_OP_ATC_INV) inv.push({ op: 'ATC_INV', a: CMDQ_ATC_0_SID.get(w, off), b: CMDQ_ATC_0_SSID.get(w, off), addr: CMDQ_ATC_1_ADDR_MASK.get(w, off), size: CMDQ_ATC_1_SIZE.get(w, off) });
    };
    await runIn(lab, mm.munmap(page5, PAGE), 'munmap');
    lab.smmu.cmdq.onCommand = prevOnCommand;
    c.ok('munmap became a TLBI_NH_VA of that page for the SVA domain\'s ASID', inv.some((x) => x.op === 'TLBI_NH_VA' && x.a === asid && x.addr === page5), JSON.stringify(inv));
    c.ok('and an ATC_INV of it for the endpoint\'s StreamID and PASID', inv.some((x) => x.op === 'ATC_INV' && x.a === ACCEL.sid && x.b === pasid && x.addr <= page5 && page5 < x.addr + PAGE * 2 ** x.size), JSON.stringify(inv));
    c.ok('munmap invalidated the endpoint\'s ATC', ep.atsStats.invalidations > invBefore && !ep.atcContents.some((e) => e.ssid === pasid && e.base === page5));
    mm.mmap(PAGE, PROT_READ | PROT_WRITE, { addr: page5, fixed: true });
    const remapped = await runIn(lab, ep.write(page5, Uint8Array.of(0x77), { ssid: pasid }), 'write after remap');
    await settle(lab);
    c.ok('the device faults the new page in (no stale translation)', remapped.status === 'ok' && ep.atsStats.pageRequests === reqBefore + 1);
    c.ok('and writes the new page, not the freed one', mm.read(page5, 1)[0] === 0x77 && mm.translate(page5) !== null);
    await runIn(lab, mm.mprotect(buf, PAGE, PROT_READ), 'mprotect');
    const ro = await runIn(lab, ep.write(buf + 8, Uint8Array.of(1), { ssid: pasid }), 'write to read-only');
    await settle(lab);
    c.equal('a write after mprotect(PROT_READ) fails in the device', ro.status, 'fault');
    c.equal('and the CPU still sees the device\'s first bytes', mm.read(buf + 8, 1)[0], patternByte(0, 8));

    // 5. Another process exits while bound: its PASID stops translating, page requests get Invalid.
    const proc2 = lab.kernel.processes.spawn();
    const buf2 = proc2.mm.mmap(PAGE, PROT_READ | PROT_WRITE);
    const bond2 = await runIn(lab, iommuSvaBindDevice(pdev, proc2.mm), 'bind 2');
    const w2 = await runIn(lab, ep.write(buf2, Uint8Array.of(5), { ssid: bond2.pasid }), 'write 2');
    await runIn(lab, proc2.exit(), 'exit 2');
    const cd2 = master.cdTable!.readCd(bond2.pasid);
    c.ok('the exited mm\'s CD is quiet: valid, EPD0, TTB0 dropped', w2.status === 'ok' && CTXDESC_CD_0_V.isSet(cd2) && CTXDESC_CD_0_TCR_EPD0.isSet(cd2) && CTXDESC_CD_1_TTB0_MASK.get(cd2) === 0);
    const invalidBefore = devFaultParam(pdev)!.stats.invalid;
    const dead = await runIn(lab, ep.write(buf2, Uint8Array.of(6), { ssid: bond2.pasid }), 'write after exit');
    await settle(lab);
    c.ok('DMA on it fails and its page request gets Invalid', dead.status === 'fault' && devFaultParam(pdev)!.stats.invalid === invalidBefore + 1);
    await runIn(lab, iommuSvaUnbindDevice(bond2), 'unbind 2');
    c.ok('unbind frees the exited mm and its PASID', proc2.mm.state === 'freed' && !lab.kernel.iommu.globalPasids.has(bond2.pasid));

    // 6. Unbind, exit: the PASID goes with the mm.
    await runIn(lab, iommuSvaUnbindDevice(bond), 'unbind');
    c.ok('after unbind the PASID CD is invalid', !CTXDESC_CD_0_V.isSet(master.cdTable!.readCd(pasid)));
    c.ok('and the SVA domain\'s ASID is free again', !armSmmuAsidSpace(lab.kernel.core).has(asid));
    c.ok('the PASID stays with the live mm', lab.kernel.iommu.globalPasids.has(pasid));
    await runIn(lab, proc.exit(), 'exit');
    c.ok('the PASID is free once the mm is gone', !lab.kernel.iommu.globalPasids.has(pasid) && mm.state === 'freed');
    c.equal('no page request left outstanding in the device', ep.outstandingPageRequests, 0);
    return c.result({ pages: PAGES, 'page requests': ep.atsStats.pageRequests, 'PRI responses': lab.smmu.eventStats.priResponses, pasid });
  },
};
