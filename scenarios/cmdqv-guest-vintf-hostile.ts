/**
 * cmdqv-guest-vintf-hostile: the 2021 thread's questions, asked of a guest-owned (HYP_OWN=0) VINTF.
 * The host driver gives VINTF1 (VMID 7) and VINTF2 (VMID 8) to two "guests" through its user VINTF
 * API (SID pairs, one LVCMDQ each in host memory); each guest then has only what a VMM would pass
 * through: its VINTF page0 (plain MMIO) and its queue memory. Shows:
 * - a batch mixing an allowed and a forbidden command runs up to the forbidden one and stops there
 *   with CONS.ERR = ILL (the hardware checks every command; a driver must check the whole batch);
 * - an ATC_INV naming a StreamID no SID_MATCH pair matches is an illegal command (and a physical SID
 *   is not the guest's to name);
 * - CMD_SYNC is taken on the VCMDQ (CS=NONE completes; CS=IRQ is illegal: the model's default);
 * - writes over the whole VINTF page0 never reach VINTF_CONFIG: HYP_OWN stays 0, the VMID stays;
 * - errors on VINTF1 are reported to its owner, not recovered by the host, and never stop VINTF2's
 *   queue nor the host's VINTF0.
 */
import { iommuMap, iommuUnmap } from '../core/iommu-map.js';
import { IOMMU_READ } from '../core/io-pgtable.js';
import { armSmmuCmdqBuildCmd } from '../drivers/arm-smmu-v3/arm-smmu-v3-cmdq.js';
import { CMDQ_OP_ATC_INV, CMDQ_OP_CFGI_STE, CMDQ_OP_TLBI_NH_ASID } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { tegra241CmdqvAllocUserVintf, tegra241VintfAllocLvcmdqUser, tegra241VintfInitVsid, type Tegra241Vintf } from '../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import { Checks, type Scenario } from './scenario.js';
import { bootCmdqv, type CmdqvLab } from './cmdqv-lab.js';
import { allocPages, ownDomain, runIn, V3 } from './smmu-v3-lab.js';

/** page0 register offsets (the guest's view: its LVCMDQ0). */
const CONS = 0x0;
const PROD = 0x4;
const CONFIG = 0x8;
const STATUS = 0xc;
const GERROR = 0x10;
const GERRORN = 0x14;
const SYNC_NONE = [0x46, 0, 0, 0];
const SYNC_IRQ = [0x46 | (1 << 12), 0, 0, 0];

/** A guest: its page0 (PA) and its queue (PA, 256 entries), producing as a guest driver would. */
class Guest {
  prod = 0;
  constructor(readonly lab: CmdqvLab, readonly vintf: Tegra241Vintf, readonly queue: number) {}

  private get cpu() {
    return this.lab.machine.cpu;
  }

  reg(off: number): number {
    return this.cpu.mmioRead32(this.vintf.page0Phys + off);
  }

  write(off: number, v: number): void {
    this.cpu.mmioWrite32(this.vintf.page0Phys + off, v);
  }

  async enable(): Promise<void> {
    this.write(CONFIG, 1);
    await runIn(this.lab, this.lab.machine.scheduler.delay(1000), 'guest VCMDQ enable');
  }

  /** Write commands (4 words each) and ring PROD; let the hardware run. */
  async issue(cmds: number[][]): Promise<void> {
    for (const w of cmds) {
      const pa = this.queue + (this.prod % 256) * 16;
      w.forEach((x, i) => this.cpu.ram.write32(pa + i * 4, x >>> 0));
      this.prod = (this.prod + 1) % 512;
    }
    this.write(PROD, this.prod);
    await runIn(this.lab, this.lab.machine.scheduler.delay(200_000), 'guest commands');
  }

  get consIndex(): number {
    return this.reg(CONS) & 0x1ff;
  }

  get consErr(): number {
    return (this.reg(CONS) >>> 24) & 0x7f;
  }

  /** The guest's recovery: overwrite the bad entry with a CMD_SYNC and acknowledge GERRORN. */
  async skipAndAck(): Promise<void> {
    const pa = this.queue + (this.consIndex % 256) * 16;
    SYNC_NONE.forEach((x, i) => this.cpu.ram.write32(pa + i * 4, x));
    this.write(GERRORN, this.reg(GERROR));
    await runIn(this.lab, this.lab.machine.scheduler.delay(200_000), 'guest recovery');
  }
}

function cmd(ent: Parameters<typeof armSmmuCmdqBuildCmd>[2]): number[] {
  const w = new Uint32Array(4);
  armSmmuCmdqBuildCmd(w, 0, ent);
  return [...w];
}

const atcInv = (sid: number): number[] => cmd({ opcode: CMDQ_OP_ATC_INV, atc: { sid, ssid: 0, size: 52, addr: 0, global: false } });
const tlbiAsid = (vmid: number, asid: number): number[] => cmd({ opcode: CMDQ_OP_TLBI_NH_ASID, tlbi: { num: 0, scale: 0, asid, vmid, leaf: false, ttl: 0, tg: 0, addr: 0 } });
const cfgiSte = (sid: number): number[] => cmd({ opcode: CMDQ_OP_CFGI_STE, cfgi: { sid, ssid: 0, leaf: true } });

export const scenario: Scenario = {
  name: 'cmdqv-guest-vintf-hostile',
  shows: "a HYP_OWN=0 VINTF against the 2021 thread's hostile cases: mixed batch, unmatched SID, CMD_SYNC, HYP_OWN writes, cross-VINTF isolation",
  async run(ctx) {
    const c = new Checks();
    const lab = await bootCmdqv({ seed: ctx.seed });
    const m = lab.cmdqvModel;
    const guests: Guest[] = [];
    for (const [vmid, vsid] of [[7, 1], [8, 1]] as const) {
      const vintf = await runIn(lab, tegra241CmdqvAllocUserVintf(lab.cmdqv, vmid), 'alloc VINTF');
      tegra241VintfInitVsid(vintf, vsid, 0x08); // the ATS endpoint 0000:00:01.0
      const q = allocPages(lab, 4096);
      tegra241VintfAllocLvcmdqUser(vintf, 0, q, 4096);
      const g = new Guest(lab, vintf, q);
      await g.enable();
      guests.push(g);
    }
    const [g1, g2] = guests as [Guest, Guest];
    const reports: bigint[] = [];
    g1.vintf.onUserError = (map) => reports.push(map[0]);
    c.ok('both guests see their VCMDQ enabled through page0 alone', g1.reg(STATUS) === 1 && g2.reg(STATUS) === 1);
    const atc1 = (): number => m.vcmdqs[4]!.cq.stats.atcInvalidations;

    // 1. A batch mixing allowed and forbidden commands.
    await g1.issue([atcInv(1), cfgiSte(1), atcInv(1), SYNC_NONE]);
    c.equal('mixed batch: the ATC_INV before the forbidden CFGI_STE executed', atc1(), 1);
    c.equal('mixed batch: the queue stopped at the CFGI_STE (CONS index 1)', g1.consIndex, 1);
    c.equal('mixed batch: CONS.ERR = ILL', g1.consErr, 1);
    c.equal('the error reached the VINTF owner as LVCMDQ_ERR_MAP = 1 (not recovered by the host)', reports.map(Number), [1]);
    c.equal('the host recovered nothing of VINTF1', lab.cmdqv.stats.vintf0Errors, 0);
    await g1.skipAndAck();
    c.equal('after the guest skips it, the rest of the batch ran', [g1.consIndex, atc1()], [4, 2]);

    // 2. ATC_INV with an unmatched StreamID, and with the physical one.
    await g1.issue([atcInv(2), SYNC_NONE]);
    c.equal('unmatched vSID: illegal command, not sent', [g1.consErr, atc1()], [1, 2]);
    await g1.skipAndAck();
    await g1.issue([atcInv(0x08), SYNC_NONE]);
    c.equal('the physical SID is not the guest\'s to name', [g1.consErr, atc1()], [1, 2]);
    await g1.skipAndAck();

    // 3. CMD_SYNC on the VCMDQ.
    const syncs = m.vcmdqs[4]!.cq.stats.syncs;
    const before = g1.consIndex;
    await g1.issue([tlbiAsid(0, 5), SYNC_NONE]);
    c.equal('TLBI + CMD_SYNC(CS=NONE) complete on the VCMDQ: CONS passes the sync, no error', [g1.consIndex - before, m.vcmdqs[4]!.errorActive, m.vcmdqs[4]!.cq.stats.syncs - syncs], [2, false, 1]);
    await g1.issue([SYNC_IRQ]);
    c.equal('CMD_SYNC with CS=IRQ: illegal on a VCMDQ (the model\'s documented default)', g1.consErr, 1);
    await g1.skipAndAck();

    // 4. The guest writes "HYP_OWN" everywhere it can reach.
    const cfgBefore = m.peek32(0x1100);
    for (let off = 0x80; off < 0x1_0000; off += 0x40) g1.write(off, (1 << 17) | (0x55 << 1) | 1);
    c.equal('writes over the guest\'s page0 leave VINTF1\'s config as the host set it (HYP_OWN=0, VMID 7)', m.peek32(0x1100), cfgBefore);
    c.equal('VINTF1 still HYP_OWN=0 with VMID 7', [m.vintfs[1]!.hypOwn, m.vintfs[1]!.vmid], [false, 7]);

    // 5. Errors on VINTF1 never disturb VINTF2 or the host.
    await g1.issue([cfgiSte(1), SYNC_NONE]);
    c.equal('VINTF1 is in error again', g1.consErr, 1);
    const atc2 = m.vcmdqs[8]!.cq.stats.atcInvalidations;
    await g2.issue([atcInv(1), SYNC_NONE, atcInv(1), SYNC_NONE]);
    c.equal('VINTF2 consumes all of its batch meanwhile', [g2.consIndex, g2.consErr, m.vcmdqs[8]!.cq.stats.atcInvalidations - atc2], [4, 0, 2]);
    c.equal('VI_ERR_MAP names VINTF1 only', m.peek32(0x14), 1 << 1);
    c.equal('VINTF2\'s LVCMDQ_ERR_MAP is clear', m.peek32(0x1200 + 0xc0), 0);
    const domain = await ownDomain(lab, V3.engine);
    const pa = allocPages(lab, 4096);
    await runIn(lab, iommuMap(domain, 0x6000_0000, pa, 4096, IOMMU_READ), 'host map');
    const hostUnmap = await runIn(lab, iommuUnmap(domain, 0x6000_0000, 4096), 'host unmap');
    c.equal('the host unmaps through VINTF0 meanwhile', [hostUnmap, m.vcmdqs[0]!.errorActive], [4096, false]);
    return c.result({ 'VINTF1 errors': reports.length, 'VINTF2 ATC_INVs': m.vcmdqs[8]!.cq.stats.atcInvalidations, 'model refused': m.stats.refused });
  },
};
