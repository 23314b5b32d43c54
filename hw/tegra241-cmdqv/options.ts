/**
 * Tegra241 CMDQV construction options: the sizes PARAM advertises, the reset value of CONFIG, and
 * the choices the public sources leave open (each marked (?) in the fact sheet), settable so an
 * experiment can try the alternatives.
 *
 * Supports: validating every option with an error naming it.
 * Does not support: sizes beyond what the register layout can address (64 VINTFs, 128 VCMDQs,
 * 16 SID pairs per VINTF).
 */
import {
  CMD_ATC_INV,
  CMD_SYNC,
  CMD_TLBI_NH_ASID,
  CMD_TLBI_NH_VA,
} from '../smmu-v3/formats.js';
import { VCMDQ_ERR_ILL_ACCESS, VCMDQ_ERR_ILL_OPCODE, VINTF_SID_PAIRS_MAX } from './regs.js';

export interface Tegra241CmdqvOptions {
  /** Names the device in logs and traces. */
  name?: string;
  /** PARAM.CMDQV_VER (default 1, the only version the kernel and QEMU know). */
  version?: number;
  /**
   * PARAM.CMDQV_NUM_VI_LOG2 (default 2: 4 VINTFs) and PARAM.CMDQV_NUM_CMDQ_LOG2 (default 4: 16
   * VCMDQs, so 4 per VINTF as the driver divides them). Grace's real values are not public (?).
   */
  vintfsLog2?: number;
  vcmdqsLog2?: number;
  /** PARAM.CMDQV_NUM_SID_PER_VM_LOG2 (default 4: the 16 SID_MATCH/SID_REPLACE pairs of Grace). */
  sidPairsLog2?: number;
  /**
   * CONFIG at reset (default 0x00020083, QEMU's: CMDQV_EN=1, PER_CMD_OFFSET=16 B, CLK_BATCH=8,
   * CMD_BATCH=32). Real hardware's reset value is not public (?). STATUS follows CMDQV_EN.
   */
  configReset?: number;
  /**
   * The opcodes a HYP_OWN=0 VINTF's VCMDQs execute (default: CMD_TLBI_NH_ASID, CMD_TLBI_NH_VA,
   * CMD_ATC_INV, CMD_SYNC, the set mainline's guest filter sends there). The set the hardware
   * accepts is not public (?).
   */
  guestCommands?: readonly number[];
  /** CONS.ERR for an opcode outside `guestCommands` (default 'ILL_OPCODE' (?); 'ILL_ACCESS' is code 4). */
  forbiddenCommandError?: 'ILL_OPCODE' | 'ILL_ACCESS';
  /** CONS.ERR for a StreamID no enabled SID_MATCH pair matches (default 'ILL_OPCODE', per NVIDIA in 2021). */
  unmatchedSidError?: 'ILL_OPCODE' | 'ILL_ACCESS';
  /**
   * A CMD_SYNC whose CS is not NONE on a VCMDQ: 'ill' (default: CERROR_ILL, "only supports CS_NONE")
   * or 'none' (completed as CS=NONE, nothing signalled). Which one the hardware does is (?).
   */
  syncCs?: 'ill' | 'none';
  /**
   * CMDQ_ALLOC_MAP ordering: 'enforce' (default) ignores a map of LVCMDQ l>0 while l-1 is unmapped,
   * and an unmap of l while l+1 is mapped; 'free' allows any order. Out-of-order behaviour of the
   * real hardware is undefined in the sources (?).
   */
  allocOrder?: 'enforce' | 'free';
  /**
   * VINTF_CONFIG.HYP_OWN wired to zero: writes of it are dropped and it reads 0 (default false). The
   * CMDQV as a guest kernel sees it through a VMM that masks the bit (QEMU does on every guest
   * write); lets a kernel run its guest mode on this machine.
   */
  hypOwnWiredZero?: boolean;
  /**
   * How the SMMU serves the VCMDQs next to its own Command queue (which of the two the silicon does
   * is not public (?)):
   * - 'parallel' (default): each queue is consumed in order at `timing.commandNs` per command,
   *   independently of the others. A CMD_SYNC orders only the commands of its own queue (the SMMUv3
   *   architecture's CMD_SYNC scope; its Enhanced Command queues, SMMUv3.3, are independent queues
   *   for the same reason), and the time a TLBI costs is the round trip of its invalidation to the
   *   TLBs, which several queues' commands overlap: this is what lets a VCMDQ's sync wait for its
   *   own CPU's commands only.
   * - 'arbiter': one command processor serves every queue in turn (CONFIG's CMDQ_MAX_CMD_BATCH and
   *   CMDQ_MAX_CLK_BATCH suggest an arbiter taking bounded batches from each queue): the queues'
   *   batches serialise, so VCMDQs only spread the insertion, not the consumption.
   */
  vcmdqService?: 'parallel' | 'arbiter';
}

export interface ResolvedCmdqvOptions {
  name: string;
  version: number;
  vintfsLog2: number;
  vcmdqsLog2: number;
  sidPairsLog2: number;
  configReset: number;
  /** 1 at each opcode a HYP_OWN=0 VINTF executes. */
  guestOpcodes: Uint8Array;
  forbiddenCommandError: number;
  unmatchedSidError: number;
  syncCs: 'ill' | 'none';
  allocOrder: 'enforce' | 'free';
  hypOwnWiredZero: boolean;
  vcmdqService: 'parallel' | 'arbiter';
}

export const DEFAULT_GUEST_COMMANDS: readonly number[] = [CMD_TLBI_NH_ASID, CMD_TLBI_NH_VA, CMD_ATC_INV, CMD_SYNC];
export const DEFAULT_CONFIG_RESET = 0x0002_0083;

function intIn(name: string, v: number | undefined, dflt: number, lo: number, hi: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < lo || x > hi) throw new RangeError(`Tegra241 CMDQV option ${name}: ${String(x)} is not an integer in [${lo}, ${hi}]`);
  return x;
}

function errCode(name: string, v: string | undefined): number {
  const x = v ?? 'ILL_OPCODE';
  if (x === 'ILL_OPCODE') return VCMDQ_ERR_ILL_OPCODE;
  if (x === 'ILL_ACCESS') return VCMDQ_ERR_ILL_ACCESS;
  throw new RangeError(`Tegra241 CMDQV option ${name}: ${String(x)} is not 'ILL_OPCODE' or 'ILL_ACCESS'`);
}

/** Option keys (for firmware-made instances, whose unknown keys are rejected). */
export const CMDQV_OPTION_KEYS: ReadonlySet<string> = new Set<keyof Tegra241CmdqvOptions>([
  'name', 'version', 'vintfsLog2', 'vcmdqsLog2', 'sidPairsLog2', 'configReset', 'guestCommands',
  'forbiddenCommandError', 'unmatchedSidError', 'syncCs', 'allocOrder', 'hypOwnWiredZero', 'vcmdqService',
]);

export function resolveCmdqvOptions(o: Tegra241CmdqvOptions = {}): ResolvedCmdqvOptions {
  for (const k of Object.keys(o)) {
    if (!CMDQV_OPTION_KEYS.has(k)) throw new RangeError(`Tegra241 CMDQV: unknown option "${k}"`);
  }
  const vintfsLog2 = intIn('vintfsLog2', o.vintfsLog2, 2, 0, 6);
  const vcmdqsLog2 = intIn('vcmdqsLog2', o.vcmdqsLog2, 4, 0, 7);
  if (vcmdqsLog2 < vintfsLog2) throw new RangeError(`Tegra241 CMDQV options: ${2 ** vcmdqsLog2} VCMDQs cannot give each of ${2 ** vintfsLog2} VINTFs one`);
  const guestOpcodes = new Uint8Array(256);
  for (const op of o.guestCommands ?? DEFAULT_GUEST_COMMANDS) {
    if (!Number.isInteger(op) || op < 0 || op > 0xff) throw new RangeError(`Tegra241 CMDQV option guestCommands: ${String(op)} is not an 8-bit opcode`);
    guestOpcodes[op] = 1;
  }
  const syncCs = o.syncCs ?? 'ill';
  if (syncCs !== 'ill' && syncCs !== 'none') throw new RangeError(`Tegra241 CMDQV option syncCs: ${String(syncCs)} is not 'ill' or 'none'`);
  const allocOrder = o.allocOrder ?? 'enforce';
  if (allocOrder !== 'enforce' && allocOrder !== 'free') throw new RangeError(`Tegra241 CMDQV option allocOrder: ${String(allocOrder)} is not 'enforce' or 'free'`);
  const vcmdqService = o.vcmdqService ?? 'parallel';
  if (vcmdqService !== 'parallel' && vcmdqService !== 'arbiter') throw new RangeError(`Tegra241 CMDQV option vcmdqService: ${String(vcmdqService)} is not 'parallel' or 'arbiter'`);
  return {
    name: o.name ?? 'tegra241-cmdqv',
    version: intIn('version', o.version, 1, 0, 15),
    vintfsLog2,
    vcmdqsLog2,
    sidPairsLog2: intIn('sidPairsLog2', o.sidPairsLog2, 4, 0, Math.log2(VINTF_SID_PAIRS_MAX)),
    configReset: intIn('configReset', o.configReset, DEFAULT_CONFIG_RESET, 0, 0x001f_ffff),
    guestOpcodes,
    forbiddenCommandError: errCode('forbiddenCommandError', o.forbiddenCommandError),
    unmatchedSidError: errCode('unmatchedSidError', o.unmatchedSidError),
    syncCs,
    allocOrder,
    hypOwnWiredZero: o.hypOwnWiredZero ?? false,
    vcmdqService,
  };
}
