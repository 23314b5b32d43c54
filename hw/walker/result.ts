/**
 * What a translation table walk produces: an output address with its permissions and attributes, or
 * a fault. The caller owns one WalkResult and passes it to every walk, so the hot path allocates
 * nothing; every field is overwritten by each walk (see `reset`).
 */

/** Access being translated: a bit set of ACCESS_*. No bit set = unprivileged data read. */
export const ACCESS_WRITE = 1 << 0;
/** Instruction fetch (a read; ignored for writes, which are always data). */
export const ACCESS_INSTR = 1 << 1;
/** Privileged access (EL1 in the EL1&0 regime; PnU=1 on an SMMU). */
export const ACCESS_PRIV = 1 << 2;

/** Permission bits in `perms` / `s1Perms` / `s2Perms`. */
export const PERM_R = 1 << 0;
export const PERM_W = 1 << 1;
export const PERM_X = 1 << 2;

export type WalkFaultKind =
  | 'translation'
  | 'access-flag'
  | 'permission'
  | 'address-size'
  /** A table descriptor read hit no memory (a bus error): the SMMU's external abort on walk. */
  | 'external-abort-on-walk';

export class WalkResult {
  /** null on success; otherwise what went wrong. */
  fault: WalkFaultKind | null = null;
  /** Stage that faulted (1 or 2), 0 on success. */
  faultStage = 0;
  /** Lookup level the fault belongs to (0-3). */
  faultLevel = 0;
  /** Stage 2 fault taken while fetching a stage 1 descriptor (or the stage 1 table base). */
  s1ptw = false;
  /** External abort: physical address of the descriptor read that failed; -1 otherwise. */
  walkPa = -1;

  /** Input address of the walk (VA for stage 1 and nested, IPA for stage 2 only). */
  input = 0;
  /**
   * Intermediate physical address: for nested walks the stage 1 output (on success) or, for a stage 2
   * fault, the IPA stage 2 was translating (a descriptor's IPA when s1ptw). Equals `pa` for a single
   * stage 1 walk and `input` for a single stage 2 walk. -1 when not known (stage 1 fault before output).
   */
  ipa = -1;

  /** Output physical address. */
  pa = 0;
  /** Effective permissions (PERM_*) at the privilege of the access, all stages combined. */
  perms = 0;
  /**
   * Lookup level of the leaf (the stage 1 leaf for nested walks; the stage 2 leaf for stage 2 only).
   * After an s1ptw fault: the stage 1 level whose descriptor was being fetched.
   */
  level = 0;
  /** Bytes translated by this result with the same offset: the smallest leaf of the stages used. */
  blockSize = 0;
  /** A block descriptor used had FEAT_BBM's nT bit (bit 16) set. */
  nT = false;

  // Stage 1 leaf (valid when stage 1 was used).
  s1Perms = 0;
  /** AP[2:1] after APTable restrictions: bit 1 = read-only, bit 0 = unprivileged access. */
  ap = 0;
  /** PXN / UXN including PXNTable / UXNTable. */
  pxn = false;
  uxn = false;
  attrIndx = 0;
  /** SH[1:0] of the stage 1 leaf. */
  sh = 0;
  ns = false;
  nG = false;

  // Stage 2 leaf (valid when stage 2 was used).
  s2Perms = 0;
  /** S2AP[1:0]: bit 0 = read, bit 1 = write. */
  s2ap = 0;
  s2xn = false;
  memAttr = 0;
  s2Sh = 0;
  s2Level = 0;
  s2BlockSize = 0;

  /** True if the walk produced an output address. */
  get ok(): boolean {
    return this.fault === null;
  }

  reset(input: number): void {
    this.fault = null;
    this.faultStage = 0;
    this.faultLevel = 0;
    this.s1ptw = false;
    this.walkPa = -1;
    this.input = input;
    this.ipa = -1;
    this.pa = 0;
    this.perms = 0;
    this.level = 0;
    this.blockSize = 0;
    this.nT = false;
    this.s1Perms = 0;
    this.ap = 0;
    this.pxn = false;
    this.uxn = false;
    this.attrIndx = 0;
    this.sh = 0;
    this.ns = false;
    this.nG = false;
    this.s2Perms = 0;
    this.s2ap = 0;
    this.s2xn = false;
    this.memAttr = 0;
    this.s2Sh = 0;
    this.s2Level = 0;
    this.s2BlockSize = 0;
  }
}
