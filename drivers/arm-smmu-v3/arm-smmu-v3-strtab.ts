/**
 * The stream table (kernel: arm_smmu_init_strtab*(), arm_smmu_init_l2_strtab(),
 * arm_smmu_get_step_for_sid(), arm_smmu_write_ste(), arm_smmu_init_initial_stes()).
 *
 * Linear when the SMMU cannot do two levels or has at most STRTAB_SPLIT bits of StreamID; otherwise
 * two-level, with level-2 tables of 2^STRTAB_SPLIT STEs (one PCI bus) allocated when a master with a
 * StreamID in their range is probed, so a sparse 16-bit (or wider) StreamID space costs only what is
 * used. Fresh STEs are written straight into memory (the hardware has never seen them: either the
 * table is not installed yet, or the L1 descriptor is written after them); live ones go through the
 * entry writer.
 */
import { KernelError } from '../../bus/errno.js';
import type { RamAccess } from '../../hw/cpu-port.js';
import type { CoherentBuffer } from '../../mm/dma-coherent.js';
import { armSmmuWriteEntry, newEntry, NUM_ENTRY_WORDS, type ArmSmmuEntryWriter } from './arm-smmu-v3-entry.js';
import { FIELD_PREP } from '../../bus/bitfield.js';
import {
  STRTAB_BASE_CFG_FMT,
  STRTAB_BASE_CFG_FMT_2LVL,
  STRTAB_BASE_CFG_FMT_LINEAR,
  STRTAB_BASE_CFG_LOG2SIZE,
  STRTAB_BASE_CFG_SPLIT,
  STRTAB_BASE_RA_HI,
  STRTAB_L1_DESC_DWORDS,
  STRTAB_L1_SZ_SHIFT,
  STRTAB_SPLIT,
  STRTAB_STE_BYTES,
} from './arm-smmu-v3-regs.js';
import { armSmmuGetSteUpdateSafe, armSmmuGetSteUsed, armSmmuMakeStrtabL1Desc } from './arm-smmu-v3-ste.js';

/** Allocates zeroed, naturally aligned coherent memory for the SMMU's own tables. */
export type StrtabAlloc = (size: number, what: string) => CoherentBuffer;

/** The kernel's struct arm_smmu_strtab_cfg */
export class ArmSmmuStrtab {
  /** STRTAB_BASE halves and STRTAB_BASE_CFG as they are programmed. */
  readonly baseLo: number;
  readonly baseHi: number;
  readonly baseCfg: number;
  /** Level-1 entries (2-level) or STEs (linear). */
  readonly numL1Ents: number;
  /** Level-2 tables by L1 index (2-level only). */
  readonly l2: (CoherentBuffer | null)[];
  /** StreamID bits the table covers. */
  readonly coveredBits: number;

  private constructor(
    readonly twoLevel: boolean,
    readonly table: CoherentBuffer,
    numL1Ents: number,
    log2size: number,
    private readonly ram: RamAccess,
    private readonly alloc: StrtabAlloc,
    /** Writes the STE every unused StreamID gets (abort, or bypass without disable_bypass). */
    private readonly initialSte: (target: Uint32Array) => void,
  ) {
    this.numL1Ents = numL1Ents;
    this.coveredBits = log2size;
    this.l2 = twoLevel ? new Array<CoherentBuffer | null>(numL1Ents).fill(null) : [];
    this.baseCfg = twoLevel
      ? FIELD_PREP(STRTAB_BASE_CFG_FMT, STRTAB_BASE_CFG_FMT_2LVL) | FIELD_PREP(STRTAB_BASE_CFG_LOG2SIZE, log2size) | FIELD_PREP(STRTAB_BASE_CFG_SPLIT, STRTAB_SPLIT)
      : FIELD_PREP(STRTAB_BASE_CFG_FMT, STRTAB_BASE_CFG_FMT_LINEAR) | FIELD_PREP(STRTAB_BASE_CFG_LOG2SIZE, log2size);
    this.baseLo = table.pa >>> 0;
    this.baseHi = (Math.floor(table.pa / 0x1_0000_0000) | STRTAB_BASE_RA_HI) >>> 0;
  }

  /**
   * A two-level table: 2^min(17, sidBits - SPLIT) L1 descriptors, every one invalid until its L2 table
   * is needed. Warns (through `warn`) when that cannot cover every StreamID bit.
   */
  // kernel: arm_smmu_init_strtab_2lvl() [arm-smmu-v3.c]
  static twoLevel(sidBits: number, ram: RamAccess, alloc: StrtabAlloc, initialSte: (t: Uint32Array) => void, warn: (m: string) => void): ArmSmmuStrtab {
    let size = STRTAB_L1_SZ_SHIFT - (Math.log2(STRTAB_L1_DESC_DWORDS) + 3);
    size = Math.min(size, sidBits - STRTAB_SPLIT);
    const numL1 = 2 ** size;
    size += STRTAB_SPLIT;
    if (size < sidBits) warn(`2-level strtab only covers ${size}/${sidBits} bits of SID`);
    const l1size = numL1 * (STRTAB_L1_DESC_DWORDS << 3);
    const table = alloc(l1size, 'l1 stream table');
    return new ArmSmmuStrtab(true, table, numL1, size, ram, alloc, initialSte);
  }

  /** A linear table covering every StreamID, all STEs initial. */
  // kernel: arm_smmu_init_strtab_linear() [arm-smmu-v3.c]
  static linear(sidBits: number, ram: RamAccess, alloc: StrtabAlloc, initialSte: (t: Uint32Array) => void): ArmSmmuStrtab {
    const num = 2 ** sidBits;
    const table = alloc(num * STRTAB_STE_BYTES, 'linear stream table');
    const st = new ArmSmmuStrtab(false, table, num, sidBits, ram, alloc, initialSte);
    st.initInitialStes(table.pa, num);
    return st;
  }

  /** Fill `nent` STEs at `pa` with the initial STE (never installed yet). */
  // kernel: arm_smmu_init_initial_stes() [arm-smmu-v3.c]
  private initInitialStes(pa: number, nent: number): void {
    const ste = newEntry();
    this.initialSte(ste);
    // Only non-zero words need writing: the memory is freshly zeroed.
    const nonzero: number[] = [];
    for (let w = 0; w < NUM_ENTRY_WORDS; w++) if (ste[w] !== 0) nonzero.push(w);
    for (let i = 0; i < nent; i++) {
      const base = pa + i * STRTAB_STE_BYTES;
      for (const w of nonzero) this.ram.write32(base + w * 4, ste[w]);
    }
  }

  /** True if `sid` is covered by the table (kernel: arm_smmu_sid_in_range()). */
  sidInRange(sid: number): boolean {
    const limit = this.twoLevel ? this.numL1Ents * 2 ** STRTAB_SPLIT : this.numL1Ents;
    return Number.isInteger(sid) && sid >= 0 && sid < limit;
  }

  /**
   * Make sure `sid`'s STE exists: ERANGE beyond the table; for two levels, allocate and publish its L2
   * table. + arm_smmu_init_l2_strtab()
   */
  // kernel: arm_smmu_init_sid_strtab() [arm-smmu-v3.c]
  initSid(sid: number): void {
    if (!this.sidInRange(sid)) {
      throw new KernelError('ERANGE', `StreamID 0x${sid.toString(16)} is outside the stream table (${this.coveredBits} bits of SID)`);
    }
    if (!this.twoLevel) return;
    const idx = Math.floor(sid / 2 ** STRTAB_SPLIT);
    if (this.l2[idx]) return;
    const size = 2 ** STRTAB_SPLIT * STRTAB_STE_BYTES;
    let l2: CoherentBuffer;
    try {
      l2 = this.alloc(size, `l2 stream table for SID ${sid}`);
    } catch (e) {
      throw new KernelError('ENOMEM', `failed to allocate l2 stream table for SID ${sid}: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.initInitialStes(l2.pa, 2 ** STRTAB_SPLIT);
    this.l2[idx] = l2;
    // The hardware has 64-bit atomicity with stores to the L1 table: one store publishes the L2 table.
    const desc = armSmmuMakeStrtabL1Desc(l2.pa);
    const at = this.table.pa + idx * (STRTAB_L1_DESC_DWORDS << 3);
    this.ram.write32(at + 4, desc[1]);
    this.ram.write32(at, desc[0]);
  }

  /** PA of `sid`'s STE; its L2 table must exist. */
  // kernel: arm_smmu_get_step_for_sid() [arm-smmu-v3.c]
  stePa(sid: number): number {
    if (!this.twoLevel) return this.table.pa + sid * STRTAB_STE_BYTES;
    const l2 = this.l2[Math.floor(sid / 2 ** STRTAB_SPLIT)];
    if (!l2) throw new KernelError('EINVAL', `StreamID 0x${sid.toString(16)} has no level-2 stream table`);
    return l2.pa + (sid % 2 ** STRTAB_SPLIT) * STRTAB_STE_BYTES;
  }

  /** The STE of `sid` as memory holds it now. */
  readSte(sid: number): Uint32Array {
    const pa = this.stePa(sid);
    const ste = newEntry();
    for (let w = 0; w < NUM_ENTRY_WORDS; w++) ste[w] = this.ram.read32(pa + w * 4);
    return ste;
  }

  /**
   * Change `sid`'s live STE into `target` through the entry writer; `sync` makes the SMMU drop its
   * cached copy (CFGI_STE + CMD_SYNC). Kernel: arm_smmu_write_ste() (without the prefetch)
   */
  async writeSte(sid: number, target: Uint32Array, sync: () => Promise<void>): Promise<void> {
    const pa = this.stePa(sid);
    const ram = this.ram;
    const writer: ArmSmmuEntryWriter = {
      getUsed: armSmmuGetSteUsed,
      getUpdateSafe: armSmmuGetSteUpdateSafe,
      sync,
      writeQword: (entry, i) => {
        // One 64-bit store: both halves land before the SMMU can look again.
        ram.write32(pa + i * 8 + 4, entry[2 * i + 1]);
        ram.write32(pa + i * 8, entry[2 * i]);
      },
    };
    await armSmmuWriteEntry(writer, this.readSte(sid), target);
  }

  /** Every StreamID that has an STE in memory (all, linear; those with an L2 table, 2-level). */
  *allocatedSids(): Generator<number> {
    if (!this.twoLevel) {
      for (let sid = 0; sid < this.numL1Ents; sid++) yield sid;
      return;
    }
    for (let i = 0; i < this.l2.length; i++) {
      if (!this.l2[i]) continue;
      for (let j = 0; j < 2 ** STRTAB_SPLIT; j++) yield i * 2 ** STRTAB_SPLIT + j;
    }
  }

  /** Every coherent buffer the table uses (to free them). */
  buffers(): CoherentBuffer[] {
    return [this.table, ...this.l2.filter((b): b is CoherentBuffer => b !== null)];
  }
}
