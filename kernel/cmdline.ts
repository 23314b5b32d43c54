/**
 * The kernel command line: typed parameters, as `early_param`/`module_param` declare them.
 * Unknown parameters are warned about (Linux passes them to init); a known parameter with a bad value
 * is rejected with an error naming the parameter and the value.
 */
import { KernelError } from '../bus/errno.js';

export interface KernelParams {
  /** iommu.passthrough: default domain IDENTITY instead of DMA. */
  'iommu.passthrough': boolean;
  /** iommu.strict: invalidate on every unmap (DMA) rather than lazily (DMA-FQ). */
  'iommu.strict': boolean;
  /** arm-smmu.disable_bypass: unmatched streams fault instead of bypassing. */
  'arm-smmu.disable_bypass': boolean;
  /** arm-smmu-v3.disable_bypass: streams with no STE configured abort instead of bypassing. */
  'arm-smmu-v3.disable_bypass': boolean;
  /**
   * arm-smmu-v3.shutdown_policy: what `.shutdown` leaves behind (the kexec discussion's options):
   * `disable` clears CR0 and leaves GBPA as firmware set it (Linux today); `gbpa-abort` sets
   * GBPA.ABORT before disabling; `ste-abort` stays enabled with every STE set to abort.
   */
  'arm-smmu-v3.shutdown_policy': SmmuV3ShutdownPolicy;
  /** arm-smmu-v3.disable_cmdqv: leave a Grace CMDQV disabled and use the SMMU's command queue. */
  'arm-smmu-v3.disable_cmdqv': boolean;
  /** arm-smmu-v3.bypass_vcmdq: with a Grace CMDQV, still issue every command to the SMMU's queue. */
  'arm-smmu-v3.bypass_vcmdq': boolean;
  /**
   * arm-smmu.shutdown_policy: `bypass` sets sCR0.CLIENTPD (Linux today); `abort-unmatched` clears the
   * stream mapping and faults unmatched streams (USFCFG); `abort-all` also points every S2CR at
   * FAULT; `translate` keeps translating, with the stream mapping cleared.
   */
  'arm-smmu.shutdown_policy': SmmuV2ShutdownPolicy;
  /** arm-smmu.shutdown_fault_irqs: keep global/context fault interrupts enabled across shutdown. */
  'arm-smmu.shutdown_fault_irqs': boolean;
  /**
   * arm-smmu.stall_storm_guard: after a stalled context fault, leave stall disabled on that context
   * bank until the fault is answered (as the Adreno fix does), so a fault storm cannot wedge a master.
   */
  'arm-smmu.stall_storm_guard': boolean;
  /**
   * crashkernel=SIZE[@OFFSET]: memory reserved at boot for a crash (kdump) kernel; without OFFSET
   * it is placed as arm64 does, the highest 2 MiB-aligned fit below 4 GiB. null: none.
   */
  crashkernel: CrashKernelSpec | null;
  /** dma-test-engine.reset_on_probe: the test engine driver stops frames it inherits at probe. */
  'dma-test-engine.reset_on_probe': boolean;
}

/** A parsed `crashkernel=` value. */
export interface CrashKernelSpec {
  size: number;
  /** Fixed base (`@OFFSET`), or null to let the kernel place it. */
  offset: number | null;
}

export const SMMU_V3_SHUTDOWN_POLICIES = ['disable', 'gbpa-abort', 'ste-abort'] as const;
export type SmmuV3ShutdownPolicy = (typeof SMMU_V3_SHUTDOWN_POLICIES)[number];
export const SMMU_V2_SHUTDOWN_POLICIES = ['bypass', 'abort-unmatched', 'abort-all', 'translate'] as const;
export type SmmuV2ShutdownPolicy = (typeof SMMU_V2_SHUTDOWN_POLICIES)[number];

/** A command line the kernel refuses to boot with (bad value, unterminated quote). */
export class CmdlineError extends KernelError {
  constructor(message: string) {
    super('EINVAL', `kernel command line: ${message}`);
    this.name = 'CmdlineError';
  }
}

interface ParamSpec<T> {
  parse(value: string | null): T;
  describe: string;
}

// kernel: kstrtobool() [kstrtox.c]
function parseBool(value: string | null): boolean {
  if (value === null) return true; // a bare "name" means true, as for bool module params
  const v = value.toLowerCase();
  if (['1', 'y', 'yes', 'on', 'true'].includes(v)) return true;
  if (['0', 'n', 'no', 'off', 'false'].includes(v)) return false;
  throw new Error(`expected a boolean (1/0, y/n, on/off), got "${value}"`);
}

const BOOL: ParamSpec<boolean> = { parse: parseBool, describe: 'boolean' };

// kernel: memparse() [cmdline.c]
function memparse(text: string): number {
  const m = /^(0x[0-9a-f]+|\d+)([kmgt]?)$/i.exec(text);
  if (!m) throw new Error(`"${text}" is not a size (a number with an optional K, M, G or T suffix)`);
  const shift = { '': 0, k: 10, m: 20, g: 30, t: 40 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const v = Number(m[1]) * 2 ** shift;
  if (!Number.isSafeInteger(v)) throw new Error(`"${text}" does not fit 53 bits`);
  return v;
}

// kernel: parse_crashkernel() [crash_reserve.c]
const CRASHKERNEL: ParamSpec<CrashKernelSpec | null> = {
  describe: 'SIZE[@OFFSET]',
  parse(value) {
    if (value === null || value === '') throw new Error('expected SIZE[@OFFSET], e.g. 256M or 256M@0x60000000');
    const [sizeText, offsetText, extra] = value.split('@');
    if (extra !== undefined) throw new Error(`"${value}" has more than one "@"`);
    if (sizeText.includes(',') || sizeText.includes(':')) {
      throw new Error(`"${value}": only the SIZE[@OFFSET] form is supported (not ranges, ",high" or ",low")`);
    }
    const size = memparse(sizeText);
    if (size === 0) throw new Error('the size is 0');
    const offset = offsetText === undefined ? null : memparse(offsetText);
    return { size, offset };
  },
};

function oneOf<T extends string>(values: readonly T[]): ParamSpec<T> {
  return {
    describe: values.join('|'),
    parse(value) {
      if (value !== null && (values as readonly string[]).includes(value)) return value as T;
      throw new Error(`expected one of ${values.join(', ')}, got ${value === null ? 'nothing' : `"${value}"`}`);
    },
  };
}

const SPECS: { [K in keyof KernelParams]: ParamSpec<KernelParams[K]> } = {
  'iommu.passthrough': BOOL,
  'iommu.strict': BOOL,
  'arm-smmu.disable_bypass': BOOL,
  'arm-smmu-v3.disable_bypass': BOOL,
  'arm-smmu-v3.shutdown_policy': oneOf(SMMU_V3_SHUTDOWN_POLICIES),
  'arm-smmu-v3.disable_cmdqv': BOOL,
  'arm-smmu-v3.bypass_vcmdq': BOOL,
  'arm-smmu.shutdown_policy': oneOf(SMMU_V2_SHUTDOWN_POLICIES),
  'arm-smmu.shutdown_fault_irqs': BOOL,
  'arm-smmu.stall_storm_guard': BOOL,
  crashkernel: CRASHKERNEL,
  'dma-test-engine.reset_on_probe': BOOL,
};

/** Every parameter this kernel declares, for reports and suggestions. */
export const KNOWN_PARAMS: readonly (keyof KernelParams)[] = Object.keys(SPECS) as (keyof KernelParams)[];

/** Defaults as Linux builds them on arm64 (CONFIG_IOMMU_DEFAULT_DMA_STRICT=n, disable_bypass=y). */
export const DEFAULT_PARAMS: Readonly<KernelParams> = {
  'iommu.passthrough': false,
  'iommu.strict': false,
  'arm-smmu.disable_bypass': true,
  'arm-smmu-v3.disable_bypass': true,
  'arm-smmu-v3.shutdown_policy': 'disable',
  'arm-smmu-v3.disable_cmdqv': false,
  'arm-smmu-v3.bypass_vcmdq': false,
  'arm-smmu.shutdown_policy': 'bypass',
  'arm-smmu.shutdown_fault_irqs': false,
  'arm-smmu.stall_storm_guard': false,
  crashkernel: null,
  'dma-test-engine.reset_on_probe': false,
};

export interface ParsedCmdline {
  params: KernelParams;
  /** Parameters nobody declared, kept verbatim (warned about at boot). */
  unknown: string[];
  /** Parameters given explicitly, in order. */
  given: (keyof KernelParams)[];
}

/** Split on whitespace, honouring double quotes as the kernel's next_arg() does. */
function splitArgs(cmdline: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inQuote = false;
  let has = false;
  for (const ch of cmdline) {
    if (ch === '"') {
      inQuote = !inQuote;
      has = true;
    } else if (!inQuote && /\s/.test(ch)) {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (inQuote) throw new CmdlineError(`unterminated quote in "${cmdline}"`);
  if (has) out.push(cur);
  return out;
}

// kernel: parse_args() [kernel/params.c]
export function parseCmdline(cmdline: string): ParsedCmdline {
  const params: KernelParams = { ...DEFAULT_PARAMS };
  const unknown: string[] = [];
  const given: (keyof KernelParams)[] = [];
  for (const arg of splitArgs(cmdline)) {
    const eq = arg.indexOf('=');
    // Module parameters treat '-' and '_' alike in the parameter name (not in the module name).
    const rawName = eq < 0 ? arg : arg.slice(0, eq);
    const value = eq < 0 ? null : arg.slice(eq + 1);
    const name = normaliseName(rawName);
    if (!(name in SPECS)) {
      unknown.push(arg);
      continue;
    }
    const key = name as keyof KernelParams;
    try {
      (params as unknown as Record<string, unknown>)[key] = SPECS[key].parse(value);
    } catch (e) {
      throw new CmdlineError(`bad value for ${key}: ${(e as Error).message}`);
    }
    given.push(key);
  }
  return { params, unknown, given };
}

function normaliseName(name: string): string {
  const dot = name.indexOf('.');
  if (dot < 0) return name.replace(/-/g, '_');
  return name.slice(0, dot) + '.' + name.slice(dot + 1).replace(/-/g, '_');
}

/** Edit distance (insertions, deletions, substitutions, adjacent swaps), for "did you mean". */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2][j - 2] + 1);
      d[i][j] = v;
    }
  }
  return d[a.length][b.length];
}

/** The declared parameter an unknown one is most likely a misspelling of, or null. */
export function suggestParam(arg: string): keyof KernelParams | null {
  const eq = arg.indexOf('=');
  const name = normaliseName(eq < 0 ? arg : arg.slice(0, eq)).toLowerCase();
  let best: keyof KernelParams | null = null;
  let bestD = Infinity;
  for (const k of KNOWN_PARAMS) {
    const dd = distance(name, k.toLowerCase());
    if (dd < bestD) {
      bestD = dd;
      best = k;
    }
  }
  // Close enough to be a typo: a few edits, and fewer than a third of the name.
  return best !== null && bestD > 0 && bestD <= Math.max(1, Math.min(3, Math.floor(name.length / 3))) ? best : null;
}

/**
 * The kernel's line for parameters nobody declared (kernel: print_unknown_bootoptions()):
 * `Unknown kernel command line parameters "a b", will be passed to user space.`
 */
export function unknownParamsLine(unknown: readonly string[]): string | null {
  if (unknown.length === 0) return null;
  return `Unknown kernel command line parameters "${unknown.join(' ')}", will be passed to user space.`;
}

/** One line per unknown parameter that looks like a misspelt known one. */
export function misspeltParamHints(unknown: readonly string[]): string[] {
  const out: string[] = [];
  for (const u of unknown) {
    const s = suggestParam(u);
    if (s) out.push(`"${u}": did you mean ${s}?`);
  }
  return out;
}
