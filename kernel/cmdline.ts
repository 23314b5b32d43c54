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

// kernel: kstrtobool()
function parseBool(value: string | null): boolean {
  if (value === null) return true; // a bare "name" means true, as for bool module params
  const v = value.toLowerCase();
  if (['1', 'y', 'yes', 'on', 'true'].includes(v)) return true;
  if (['0', 'n', 'no', 'off', 'false'].includes(v)) return false;
  throw new Error(`expected a boolean (1/0, y/n, on/off), got "${value}"`);
}

const BOOL: ParamSpec<boolean> = { parse: parseBool, describe: 'boolean' };

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
};

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

// kernel: parse_args()
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
