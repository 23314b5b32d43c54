/**
 * Walk configuration for one translation stage, VMSAv8-64 (Arm ARM D8, "VMSAv8-64 translation table
 * format"), decoded from whatever the SMMU model holds (STE/CD fields, context bank registers).
 *
 * The model decodes its register fields with the helpers here (TG0, IPS/PS, SL0), then compiles a
 * StageConfig once per configuration; the walker only reads the compiled form.
 *
 * Supported: 4K, 16K and 64K granules; input sizes 25–48 bits (up to 52 with 64K, FEAT_LVA); output
 * sizes 32–48 bits (52 with 64K, FEAT_LPA: OA[51:48] in descriptor bits [15:12], and 4TB level 1
 * blocks); stage 2 starting levels with concatenated tables (up to 16); what a leaf with AF == 0 does
 * (`accessFlag`: an Access flag fault, treated as AF == 1 (SMMU CD.AFFD / STE.S2AFFD), or a hardware
 * update of AF in the descriptor (HTTU with CD.HA / STE.S2HA)). Not modelled: FEAT_LPA2 (DS),
 * TTBR1 regions and top-byte-ignore, hardware dirty state updates, the contiguous hint (ignored),
 * big-endian tables, stage 2 FEAT_XNX (XN is descriptor bit 54 only).
 */

export type Granule = 4096 | 16384 | 65536;

/** A leaf with AF == 0 raises an Access flag fault. */
export const AF_FAULT = 0;
/** A leaf with AF == 0 is used as if AF were 1; the descriptor is not written (AFFD == 1, HA == 0). */
export const AF_IGNORE = 1;
/** The walker sets AF in the descriptor in memory and uses it (hardware Access flag update, HA == 1). */
export const AF_UPDATE = 2;
export type AccessFlagMode = typeof AF_FAULT | typeof AF_IGNORE | typeof AF_UPDATE;

export interface Stage1Input {
  granule: Granule;
  /** 64 - T0SZ. */
  inputSize: number;
  /** Decoded IPS: 32, 36, 40, 42, 44, 48 or 52. */
  outputSize: number;
  /** TTB0 as a physical address (as an IPA when stage 2 follows). */
  tableBase: number;
  /** What a leaf with AF == 0 does (default AF_FAULT). */
  accessFlag?: AccessFlagMode;
}

export interface Stage2Input {
  granule: Granule;
  /** 64 - S2T0SZ. */
  inputSize: number;
  /** Decoded S2PS / VTCR.PS. */
  outputSize: number;
  /** Starting lookup level, decoded from S2SL0 / VTCR.SL0 with `decodeS2SL0`. */
  startLevel: number;
  /** S2TTB / VTTBR base address. */
  tableBase: number;
  /** What a leaf with AF == 0 does (default AF_FAULT). */
  accessFlag?: AccessFlagMode;
}

/** The configuration is one the architecture does not allow (the model reports it as it must). */
export class WalkConfigError extends Error {
  constructor(
    readonly stage: 1 | 2,
    readonly reason: string,
  ) {
    super(`stage ${stage} walk configuration: ${reason}`);
    this.name = 'WalkConfigError';
  }
}

/** TCR.TG0 / CD.TG0 / STE.S2TG: 0 = 4K, 1 = 64K, 2 = 16K; null for the reserved value. */
export function decodeTG0(tg0: number): Granule | null {
  switch (tg0) {
    case 0: return 4096;
    case 1: return 65536;
    case 2: return 16384;
    default: return null;
  }
}

/** TCR.IPS / VTCR.PS / CD.IPS / STE.S2PS: address size in bits, null for reserved encodings. */
export function decodeAddressSize(ps: number): number | null {
  switch (ps) {
    case 0: return 32;
    case 1: return 36;
    case 2: return 40;
    case 3: return 42;
    case 4: return 44;
    case 5: return 48;
    case 6: return 52;
    default: return null;
  }
}

/**
 * VTCR.SL0 / STE.S2SL0 to a starting level. With 4K the field counts from level 2 (0 → level 2,
 * 2 → level 0); with 16K and 64K from level 3 (0 → level 3, 2 → level 1). Returns -1 for the encodings
 * that need features not modelled (4K SL0=3 with FEAT_TTST, 16K SL0=3 with FEAT_LPA2).
 */
export function decodeS2SL0(granule: Granule, sl0: number): number {
  if (sl0 < 0 || sl0 > 2 || !Number.isInteger(sl0)) return -1;
  return granule === 4096 ? 2 - sl0 : 3 - sl0;
}

/** Starting level of a stage 1 walk: the level whose table resolves the top input address bits. */
export function stage1StartLevel(granule: Granule, inputSize: number): number {
  const shift = Math.log2(granule);
  const stride = shift - 3;
  return 4 - Math.ceil((inputSize - shift) / stride);
}

/** A compiled stage: everything the walker needs, precomputed. */
export class StageConfig {
  readonly granuleShift: number;
  /** Index bits per level (granuleShift - 3). */
  readonly stride: number;
  /** Right shift of the input address giving the index at each level 0-3. */
  readonly levelShift: readonly number[];
  /** Size of a block or page mapped at each level. */
  readonly levelBlockSize: readonly number[];
  /** Whether a block descriptor is permitted at each level (pages at level 3 always are). */
  readonly blockAllowed: readonly boolean[];
  /** Index mask at the starting level (covers concatenated tables) and below it. */
  readonly startIndexMask: number;
  readonly indexMask: number;
  /** Number of concatenated tables at the starting level (1 when none). */
  readonly concatenatedTables: number;
  /** Table base aligned to the starting table's size, as the hardware ignores the bits below. */
  readonly tableBase: number;
  readonly inputLimit: number;
  readonly outputLimit: number;
  /** lo-word bits holding the output address ([31:granuleShift]). */
  readonly addrLoMask: number;
  /** 64K granule: descriptor bits [15:12] carry OA[51:48]. */
  readonly oaHighInLo: boolean;

  constructor(
    readonly stage: 1 | 2,
    readonly granule: Granule,
    readonly inputSize: number,
    readonly outputSize: number,
    readonly startLevel: number,
    tableBase: number,
    /** What a leaf with AF == 0 does. */
    readonly accessFlag: AccessFlagMode = AF_FAULT,
  ) {
    this.granuleShift = Math.log2(granule);
    this.stride = this.granuleShift - 3;
    const shifts: number[] = [];
    const sizes: number[] = [];
    for (let l = 0; l < 4; l++) {
      shifts.push((3 - l) * this.stride + this.granuleShift);
      sizes.push(2 ** shifts[l]!);
    }
    this.levelShift = shifts;
    this.levelBlockSize = sizes;
    this.blockAllowed = [
      false,
      granule === 4096 || (granule === 65536 && outputSize === 52),
      true,
      true,
    ];
    const startBits = inputSize - shifts[startLevel]!;
    this.startIndexMask = 2 ** startBits - 1;
    this.indexMask = 2 ** this.stride - 1;
    this.concatenatedTables = startBits > this.stride ? 2 ** (startBits - this.stride) : 1;
    const startTableSize = 8 * 2 ** startBits;
    this.tableBase = tableBase - (tableBase % startTableSize);
    this.inputLimit = 2 ** inputSize;
    this.outputLimit = 2 ** outputSize;
    this.addrLoMask = (0x1_0000_0000 - granule) | 0;
    this.oaHighInLo = granule === 65536;
  }
}

function checkCommon(stage: 1 | 2, granule: number, inputSize: number, outputSize: number, tableBase: number): void {
  if (granule !== 4096 && granule !== 16384 && granule !== 65536) {
    throw new WalkConfigError(stage, `granule ${granule} is not 4K, 16K or 64K`);
  }
  if (decodeAddressSize([32, 36, 40, 42, 44, 48, 52].indexOf(outputSize)) !== outputSize) {
    throw new WalkConfigError(stage, `output size ${outputSize} has no PS encoding`);
  }
  if (outputSize === 52 && granule !== 65536) {
    throw new WalkConfigError(stage, '52-bit output needs the 64K granule (FEAT_LPA2 is not modelled)');
  }
  const maxIn = granule === 65536 ? 52 : 48;
  if (!Number.isInteger(inputSize) || inputSize < 25 || inputSize > maxIn) {
    throw new WalkConfigError(stage, `input size ${inputSize} is outside 25–${maxIn} bits for a ${granule / 1024}K granule`);
  }
  if (!Number.isSafeInteger(tableBase) || tableBase < 0) {
    throw new WalkConfigError(stage, `table base ${tableBase} is not an address`);
  }
}

/** Compile a stage 1 configuration. Throws WalkConfigError for one the architecture does not allow. */
export function compileStage1(input: Stage1Input): StageConfig {
  checkCommon(1, input.granule, input.inputSize, input.outputSize, input.tableBase);
  const start = stage1StartLevel(input.granule, input.inputSize);
  return new StageConfig(1, input.granule, input.inputSize, input.outputSize, start, input.tableBase, input.accessFlag ?? AF_FAULT);
}

/**
 * Compile a stage 2 configuration. The starting level must leave between 1 and stride+4 index bits at
 * that level (at most 16 concatenated tables), and the architecture forbids some starting levels for
 * small output sizes: 4K level 0 needs more than 42 bits, 16K level 1 more than 40, 64K level 1 more
 * than 42; 16K and 64K never start at level 0.
 */
export function compileStage2(input: Stage2Input): StageConfig {
  const { granule, inputSize, outputSize, startLevel } = input;
  checkCommon(2, granule, inputSize, outputSize, input.tableBase);
  if (!Number.isInteger(startLevel) || startLevel < 0 || startLevel > 3) {
    throw new WalkConfigError(2, `starting level ${startLevel} is not 0–3`);
  }
  const shift = Math.log2(granule);
  const stride = shift - 3;
  const startBits = inputSize - ((3 - startLevel) * stride + shift);
  if (startBits < 1 || startBits > stride + 4) {
    throw new WalkConfigError(
      2,
      `starting level ${startLevel} does not fit a ${inputSize}-bit input with a ${granule / 1024}K granule (${startBits} index bits)`,
    );
  }
  const forbidden =
    (granule === 4096 && startLevel === 0 && outputSize <= 42) ||
    (granule === 16384 && (startLevel === 0 || (startLevel === 1 && outputSize <= 40))) ||
    (granule === 65536 && (startLevel === 0 || (startLevel === 1 && outputSize <= 42)));
  if (forbidden) {
    throw new WalkConfigError(
      2,
      `starting level ${startLevel} is not permitted with a ${granule / 1024}K granule and a ${outputSize}-bit output size`,
    );
  }
  return new StageConfig(2, granule, inputSize, outputSize, startLevel, input.tableBase, input.accessFlag ?? AF_FAULT);
}
