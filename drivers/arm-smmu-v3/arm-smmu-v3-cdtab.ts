/**
 * A master's context descriptor table (kernel: struct arm_smmu_ctx_desc_cfg and
 * arm_smmu_alloc_cd_tables(), arm_smmu_get_cd_ptr(), arm_smmu_alloc_cd_ptr(), arm_smmu_free_cd_tables()).
 *
 * Linear (up to CTXDESC_L2_ENTRIES CDs, or any size without CD2L, capped at 64 KiB by the probe) or
 * two-level with 64 KiB leaf tables of 1024 CDs, allocated when a SubstreamID in their range is first
 * used. CD contents are written through the entry writer by the master code; this file only owns the
 * memory layout.
 */
import { KernelError } from '../../bus/errno.js';
import type { RamAccess } from '../../hw/cpu-port.js';
import type { CoherentBuffer } from '../../mm/dma-coherent.js';
import { armSmmuMakeCdL1Desc } from './arm-smmu-v3-cd.js';
import { newEntry, NUM_ENTRY_WORDS } from './arm-smmu-v3-entry.js';
import {
  CTXDESC_CD_BYTES,
  CTXDESC_L1_DESC_DWORDS,
  CTXDESC_L2_ENTRIES,
  STRTAB_STE_0_S1FMT_64K_L2,
  STRTAB_STE_0_S1FMT_LINEAR,
} from './arm-smmu-v3-regs.js';
import type { CdTableRef } from './arm-smmu-v3-ste.js';
import type { StrtabAlloc } from './arm-smmu-v3-strtab.js';

/** The kernel's struct arm_smmu_ctx_desc_cfg */
export class ArmSmmuCdTable implements CdTableRef {
  readonly s1fmt: number;
  readonly s1cdmax: number;
  readonly numL1Ents: number;
  /** The linear table, or the L1 table of a two-level one. */
  readonly cdtab: CoherentBuffer;
  /** Leaf tables by L1 index (two-level only). */
  readonly l2: (CoherentBuffer | null)[];
  /** CDs with a SubstreamID other than 0 that are valid (kernel: used_ssids). */
  usedSsids = 0;
  /** The master's STE points at this table (kernel: in_ste). */
  inSte = false;

  // kernel: arm_smmu_alloc_cd_tables() [arm-smmu-v3.c]
  constructor(
    ssidBits: number,
    twoLevelSupported: boolean,
    private readonly ram: RamAccess,
    private readonly alloc: StrtabAlloc,
  ) {
    this.s1cdmax = ssidBits;
    const maxContexts = 2 ** ssidBits;
    if (!twoLevelSupported || maxContexts <= CTXDESC_L2_ENTRIES) {
      this.s1fmt = STRTAB_STE_0_S1FMT_LINEAR;
      this.numL1Ents = maxContexts;
      this.l2 = [];
      this.cdtab = alloc(maxContexts * CTXDESC_CD_BYTES, 'context descriptor table');
    } else {
      this.s1fmt = STRTAB_STE_0_S1FMT_64K_L2;
      this.numL1Ents = Math.ceil(maxContexts / CTXDESC_L2_ENTRIES);
      this.l2 = new Array<CoherentBuffer | null>(this.numL1Ents).fill(null);
      this.cdtab = alloc(this.numL1Ents * (CTXDESC_L1_DESC_DWORDS << 3), 'context descriptor L1 table');
    }
  }

  get cdtabDma(): number {
    return this.cdtab.pa;
  }

  get twoLevel(): boolean {
    return this.s1fmt === STRTAB_STE_0_S1FMT_64K_L2;
  }

  private checkSsid(ssid: number): void {
    if (!Number.isInteger(ssid) || ssid < 0 || ssid >= 2 ** this.s1cdmax) {
      throw new KernelError('EINVAL', `SubstreamID ${ssid} is outside the CD table (${this.s1cdmax} bits)`);
    }
  }

  /** PA of CD `ssid`, or null when its leaf table does not exist. */
  // kernel: arm_smmu_get_cd_ptr() [arm-smmu-v3.c]
  cdPa(ssid: number): number | null {
    this.checkSsid(ssid);
    if (!this.twoLevel) return this.cdtab.pa + ssid * CTXDESC_CD_BYTES;
    const l2 = this.l2[Math.floor(ssid / CTXDESC_L2_ENTRIES)];
    return l2 ? l2.pa + (ssid % CTXDESC_L2_ENTRIES) * CTXDESC_CD_BYTES : null;
  }

  /**
   * PA of CD `ssid`, allocating its leaf table (and publishing the L1 descriptor) if needed. Returns
   * whether an L1 descriptor was written: the caller must then make the SMMU forget a cached invalid
   * one (CFGI_CD with Leaf = 0).
   */
  // kernel: arm_smmu_alloc_cd_ptr() [arm-smmu-v3.c]
  allocCdPa(ssid: number): { pa: number; l1Written: boolean } {
    this.checkSsid(ssid);
    if (!this.twoLevel) return { pa: this.cdtab.pa + ssid * CTXDESC_CD_BYTES, l1Written: false };
    const idx = Math.floor(ssid / CTXDESC_L2_ENTRIES);
    let l1Written = false;
    if (!this.l2[idx]) {
      let leaf: CoherentBuffer;
      try {
        leaf = this.alloc(CTXDESC_L2_ENTRIES * CTXDESC_CD_BYTES, 'context descriptor leaf table');
      } catch (e) {
        throw new KernelError('ENOMEM', `failed to allocate context descriptor table: ${e instanceof Error ? e.message : String(e)}`);
      }
      this.l2[idx] = leaf;
      // The hardware has 64-bit atomicity with stores to the L1 CD table.
      const desc = armSmmuMakeCdL1Desc(leaf.pa);
      const at = this.cdtab.pa + idx * (CTXDESC_L1_DESC_DWORDS << 3);
      this.ram.write32(at + 4, desc[1]);
      this.ram.write32(at, desc[0]);
      l1Written = true;
    }
    return { pa: this.cdPa(ssid)!, l1Written };
  }

  /** CD `ssid` as memory holds it (zeroes when its leaf table does not exist). */
  readCd(ssid: number): Uint32Array {
    const cd = newEntry();
    const pa = this.cdPa(ssid);
    if (pa === null) return cd;
    for (let w = 0; w < NUM_ENTRY_WORDS; w++) cd[w] = this.ram.read32(pa + w * 4);
    return cd;
  }

  /** Every coherent buffer the table uses. */
  buffers(): CoherentBuffer[] {
    return [this.cdtab, ...this.l2.filter((b): b is CoherentBuffer => b !== null)];
  }
}
