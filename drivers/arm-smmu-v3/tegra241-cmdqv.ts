/**
 * NVIDIA Tegra241 (Grace) CMDQ-Virtualization as an arm-smmu-v3 implementation (kernel:
 * drivers/iommu/arm/arm-smmu-v3/tegra241-cmdqv.c, v6.17).
 *
 * The CMDQV adds command queues (VCMDQs) grouped in virtual interfaces (VINTFs). The host kernel
 * takes VINTF0 (HYP_OWN=1) with all its logical VCMDQs, each an ordinary SMMUv3 command queue
 * (ArmSmmuCmdq) over the VCMDQ's registers; commands go to the LVCMDQ of the issuing CPU instead of
 * the SMMU's main queue, which spreads the insertion over several queues. A CMD_SYNC on a VCMDQ has
 * CS=NONE and is busy-polled on CONS. One threaded interrupt reports queue errors; VINTF0's are
 * recovered like the main queue's CERROR (skip the bad command, acknowledge GERRORN), those of other
 * VINTFs are handed to whoever owns them.
 *
 * When the kernel runs in a guest, the VMM wires VINTF_CONFIG.HYP_OWN to zero: reading it back after
 * enabling says so, and then only the invalidations a guest-owned VCMDQ takes (TLBI_NH_ASID,
 * TLBI_NH_VA, ATC_INV) go there, checked command by command for a whole batch; every batch on a
 * VCMDQ ends with a CMD_SYNC; everything else goes to the (trapped) main queue.
 *
 * Discovery: the kernel finds the CMDQV through ACPI (a DSDT device NVDA200C whose _UID is the SMMU's
 * IORT node identifier) and sets smmu->impl_dev. Here the Device Tree binding is this project's own:
 * the SMMU node's `nvidia,cmdqv` phandle names a `nvidia,tegra241-cmdqv` node whose first `reg` is the
 * CMDQV aperture and first interrupt its error interrupt (armSmmuDtProbeTegra241Cmdqv). ACPI boots
 * reach the same function: the kernel's ACPI reader (bus/acpi/acpi-boot.ts) names the NVDA200C
 * device whose _UID is a generic SMMUv3 node's Identifier to that SMMU as `nvidia,cmdqv`. The probe
 * reads the resources with tegra241CmdqvFindResource().
 *
 * For VMMs (iommufd vIOMMU type TEGRA241_CMDQV): tegra241CmdqvAllocUserVintf(), tegra241VintfInitVsid(),
 * tegra241VintfAllocLvcmdqUser() and their destroy functions give a VINTF with HYP_OWN=0 to a user,
 * whose page0 (`vintf.page0Phys`, 64 KiB) is what gets mapped into the guest.
 *
 * Differs from the kernel: the implementation's state hangs off `smmu.impl` (no devm_krealloc of a
 * containing structure); debugfs `bypass_vcmdq` is the `bypassVcmdq` property.
 *
 * One file over ~700 lines on purpose: it mirrors one kernel file, tegra241-cmdqv.c (the host's
 * implementation ops and the VINTFs it hands to user space share the VINTF/VCMDQ state).
 */
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import { devmIoremap, readlPollTimeout, type IoMem } from '../../bus/io.js';
import { devmRequestThreadedIrq, type IrqSpec } from '../../bus/irq.js';
import { platformGetIrqOptional, platformGetResource, PlatformDevice } from '../../bus/platform.js';
import { rawSmpProcessorId } from '../../bus/smp.js';
import { Ida } from '../../core/ida.js';
import {
  IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV,
  IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV,
  IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV,
  IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV,
  type IommufdHwQueue,
  type IommufdVdevice,
  type IommufdViommu,
  type IommufdViommuOps,
  type IommuHwInfo,
} from '../../core/iommufd.js';
import { masterOf } from './arm-smmu-v3-master.js';
import { ArmSmmuCmdq, armSmmuCmdqSupportsCmd, type ArmSmmuCmdqEnt, type CmdqHost } from './arm-smmu-v3-cmdq.js';
import type { ArmSmmuDevice, ArmSmmuImplOps } from './arm-smmu-v3-device.js';
import { ArmSmmuQueue } from './arm-smmu-v3-queue.js';
import { BIT, FIELD_GET, FIELD_PREP, GENMASK } from '../../bus/bitfield.js';
import {
  ARM_SMMU_IDR1,
  ARM_SMMU_OPT_TEGRA241_CMDQV,
  ARM_SMMU_POLL_TIMEOUT_US,
  CMDQ_ENT_DWORDS,
  CMDQ_MAX_SZ_SHIFT,
  CMDQ_OP_ATC_INV,
  CMDQ_OP_TLBI_NH_ASID,
  CMDQ_OP_TLBI_NH_VA,
  IDR1_CMDQS,
} from './arm-smmu-v3-regs.js';

const LOG_NS = 'iommu:drivers:tegra241-cmdqv';
const hex = (v: number): string => `0x${v.toString(16)}`;
const hex8 = (v: number): string => `0x${(v >>> 0).toString(16).padStart(8, '0').toUpperCase()}`;

// ---- Registers (kernel names) -------------------------------------------------------------------

const SZ_64K = 0x1_0000;
const SZ_128K = 0x2_0000;

const TEGRA241_CMDQV_CONFIG = 0x0000;
const CMDQV_EN = BIT(0);
const TEGRA241_CMDQV_PARAM = 0x0004;
const CMDQV_NUM_SID_PER_VM_LOG2 = GENMASK(15, 12);
const CMDQV_NUM_VINTF_LOG2 = GENMASK(11, 8);
const CMDQV_NUM_VCMDQ_LOG2 = GENMASK(7, 4);
const CMDQV_VER = GENMASK(3, 0);
const TEGRA241_CMDQV_STATUS = 0x0008;
const TEGRA241_CMDQV_VINTF_ERR_MAP = 0x0014;
const TEGRA241_CMDQV_CMDQ_ERR_MAP = (m: number): number => 0x0024 + 0x4 * m;
const TEGRA241_CMDQV_CMDQ_ALLOC = (q: number): number => 0x0200 + 0x4 * q;
const CMDQV_CMDQ_ALLOC_VINTF = GENMASK(20, 15);
const CMDQV_CMDQ_ALLOC_LVCMDQ = GENMASK(7, 1);
const CMDQV_CMDQ_ALLOCATED = BIT(0);

const TEGRA241_VINTF = (v: number): number => 0x1000 + 0x100 * v;
const TEGRA241_VINTF_CONFIG = 0x0000;
const VINTF_HYP_OWN = BIT(17);
const VINTF_VMID = GENMASK(16, 1);
const VINTF_EN = BIT(0);
const TEGRA241_VINTF_STATUS = 0x0004;
const TEGRA241_VINTF_SID_MATCH = (s: number): number => 0x0040 + 0x4 * s;
const TEGRA241_VINTF_SID_REPLACE = (s: number): number => 0x0080 + 0x4 * s;
const TEGRA241_VINTF_LVCMDQ_ERR_MAP_64 = (m: number): number => 0x00c0 + 0x8 * m;
const LVCMDQ_ERR_MAP_NUM_64 = 2;

const TEGRA241_VCMDQ_CONS = 0x0000;
const TEGRA241_VCMDQ_PROD = 0x0004;
const TEGRA241_VCMDQ_CONFIG = 0x0008;
const VCMDQ_EN = BIT(0);
const TEGRA241_VCMDQ_STATUS = 0x000c;
const TEGRA241_VCMDQ_GERROR = 0x0010;
const TEGRA241_VCMDQ_GERRORN = 0x0014;
const TEGRA241_VCMDQ_BASE = 0x0000;
const VCMDQ_ADDR_MASK = 0x0000_ffff_ffff_ffe0n; // GENMASK(47, 5)
const VCMDQ_LOG2SIZE = GENMASK(4, 0);
const TEGRA241_VCMDQ_CONS_INDX_BASE = 0x0008;

const TEGRA241_VINTFi_PAGE0 = (i: number): number => 0x30000 + SZ_128K * i;
const TEGRA241_VINTFi_PAGE1 = (i: number): number => TEGRA241_VINTFi_PAGE0(i) + SZ_64K;
const TEGRA241_VINTFi_LVCMDQ_PAGE0 = (i: number, q: number): number => TEGRA241_VINTFi_PAGE0(i) + 0x80 * q;
const TEGRA241_VINTFi_LVCMDQ_PAGE1 = (i: number, q: number): number => TEGRA241_VINTFi_PAGE1(i) + 0x80 * q;

/** The DT binding: the SMMU node's property and the CMDQV node's compatible. */
export const TEGRA241_CMDQV_DT_PROP = 'nvidia,cmdqv';
export const TEGRA241_CMDQV_COMPATIBLE = 'nvidia,tegra241-cmdqv';

// ---- State ------------------------------------------------------------------------------------

export interface Tegra241CmdqvParams {
  /** arm-smmu-v3.disable_cmdqv: leave the CMDQV disabled, use the SMMU's main queue. */
  disableCmdqv: boolean;
  /** arm-smmu-v3.bypass_vcmdq: issue every command to the main queue (also writable later). */
  bypassVcmdq: boolean;
}

/** The kernel's struct tegra241_vcmdq */
export class Tegra241Vcmdq {
  /** Global index. */
  idx = 0;
  /** Logical index in its VINTF. */
  lidx = 0;
  enabled = false;
  cmdq!: ArmSmmuCmdq;
  /** Offsets of the logical page0/page1 registers in the CMDQV mapping. */
  page0 = 0;
  page1 = 0;
  /** Queue memory of a user (guest) VCMDQ: BASE as written. */
  userBase: bigint | null = null;

  constructor(
    readonly cmdqv: Tegra241Cmdqv,
    readonly vintf: Tegra241Vintf,
  ) {}
}

/** The kernel's struct tegra241_vintf */
export class Tegra241Vintf {
  idx = 0;
  enabled = false;
  hypOwn = false;
  /** Offset of the VINTF's config block in the CMDQV mapping. */
  base = 0;
  vmid = 0;
  lvcmdqs: (Tegra241Vcmdq | null)[] = [];
  /** SID pair slots in use (user VINTFs). */
  readonly sids = new Ida('tegra241 vintf sids');
  /** Errors of a user VINTF (kernel: the vEVENT to its vIOMMU): the 128-bit LVCMDQ_ERR_MAP. */
  onUserError: ((lvcmdqErrMap: readonly [bigint, bigint]) => void) | null = null;
  /** The LVCMDQ_ERR_MAP reports, newest last (user VINTFs). */
  readonly userErrors: (readonly [bigint, bigint])[] = [];

  constructor(readonly cmdqv: Tegra241Cmdqv) {}

  /** Physical address of the VINTF's page0: what a VMM maps into its guest (64 KiB). */
  get page0Phys(): number {
    return this.cmdqv.basePhys + TEGRA241_VINTFi_PAGE0(this.idx);
  }
}

export interface Tegra241CmdqvStats {
  /** Interrupts handled. */
  irqs: number;
  /** VINTF0 queue errors recovered. */
  vintf0Errors: number;
  /** User VINTF error reports. */
  userErrors: number;
}

/** The kernel's struct tegra241_cmdqv */
export class Tegra241Cmdqv {
  base!: IoMem;
  basePhys = 0;
  irq: IrqSpec | null = null;
  numVintfs = 0;
  numVcmdqs = 0;
  numLvcmdqsPerVintf = 0;
  numSidsPerVintf = 0;
  version = 0;
  readonly vintfIds = new Ida('tegra241 vintf ids');
  vintfs: (Tegra241Vintf | null)[] = [];
  /** debugfs iommu/tegra241_cmdqv/bypass_vcmdq */
  bypassVcmdq: boolean;
  enabled = false;
  readonly stats: Tegra241CmdqvStats = { irqs: 0, vintf0Errors: 0, userErrors: 0 };

  constructor(
    readonly smmu: ArmSmmuDevice,
    readonly dev: Device,
    readonly params: Tegra241CmdqvParams,
  ) {
    this.bypassVcmdq = params.bypassVcmdq;
  }

  info(msg: string): void {
    this.smmu.log.info(this.dev.name, msg, LOG_NS);
  }

  warn(msg: string): void {
    this.smmu.log.warn(this.dev.name, msg, LOG_NS);
  }

  err(msg: string): void {
    this.smmu.log.err(this.dev.name, msg, LOG_NS);
  }
}

/** The Tegra241 CMDQV state of an SMMU, or null. */
export function tegra241CmdqvOf(smmu: ArmSmmuDevice): Tegra241Cmdqv | null {
  return smmu.impl instanceof Tegra241Cmdqv ? smmu.impl : null;
}

function lvcmdqErrorHeader(vcmdq: Tegra241Vcmdq): string {
  return `VINTF${vcmdq.vintf.idx}: VCMDQ${vcmdq.idx}/LVCMDQ${vcmdq.lidx}: `;
}

// ---- Configuration handshakes -------------------------------------------------------------------

/** Write CONFIG, poll STATUS bit 0 until it follows EN. */
// kernel: tegra241_cmdqv_write_config() [tegra241-cmdqv.c]
async function tegra241CmdqvWriteConfig(cmdqv: Tegra241Cmdqv, addrConfig: number, addrStatus: number, regval: number, header: string): Promise<boolean> {
  const en = (regval & BIT(0)) !== 0;
  cmdqv.base.writel(regval, addrConfig);
  try {
    const v = await readlPollTimeout(cmdqv.base, addrStatus, (s) => ((s & BIT(0)) !== 0) === en, 1, ARM_SMMU_POLL_TIMEOUT_US);
    return (v & BIT(0)) !== 0;
  } catch (e) {
    const status = cmdqv.base.readl(addrStatus);
    cmdqv.err(`${header}failed to ${en ? 'en' : 'dis'}able, STATUS=${hex8(status)}`);
    throw e;
  }
}

// kernel: cmdqv_write_config() [tegra241-cmdqv.c]
async function cmdqvWriteConfig(cmdqv: Tegra241Cmdqv, regval: number): Promise<void> {
  cmdqv.enabled = await tegra241CmdqvWriteConfig(cmdqv, TEGRA241_CMDQV_CONFIG, TEGRA241_CMDQV_STATUS, regval, 'CMDQV: ');
}

// kernel: vintf_write_config() [tegra241-cmdqv.c]
async function vintfWriteConfig(vintf: Tegra241Vintf, regval: number): Promise<void> {
  vintf.enabled = await tegra241CmdqvWriteConfig(vintf.cmdqv, vintf.base + TEGRA241_VINTF_CONFIG, vintf.base + TEGRA241_VINTF_STATUS, regval, `VINTF${vintf.idx}: `);
}

// kernel: vcmdq_write_config() [tegra241-cmdqv.c]
async function vcmdqWriteConfig(vcmdq: Tegra241Vcmdq, regval: number): Promise<void> {
  vcmdq.enabled = await tegra241CmdqvWriteConfig(vcmdq.cmdqv, vcmdq.page0 + TEGRA241_VCMDQ_CONFIG, vcmdq.page0 + TEGRA241_VCMDQ_STATUS, regval, lvcmdqErrorHeader(vcmdq));
}

// ---- ISR ----------------------------------------------------------------------------------------

function readErrMap64(cmdqv: Tegra241Cmdqv, vintf: Tegra241Vintf, m: number): bigint {
  return cmdqv.base.readq(vintf.base + TEGRA241_VINTF_LVCMDQ_ERR_MAP_64(m));
}

/** A user VINTF's queue error goes to its owner. */
// kernel: tegra241_vintf_user_handle_error() [tegra241-cmdqv.c]
function tegra241VintfUserHandleError(vintf: Tegra241Vintf): void {
  const cmdqv = vintf.cmdqv;
  const map: [bigint, bigint] = [readErrMap64(cmdqv, vintf, 0), readErrMap64(cmdqv, vintf, 1)];
  cmdqv.stats.userErrors++;
  vintf.userErrors.push(map);
  if (vintf.userErrors.length > 64) vintf.userErrors.shift();
  vintf.onUserError?.(map);
}

/** Recover VINTF0's queues in error as the main queue's CERROR. */
// kernel: tegra241_vintf0_handle_error() [tegra241-cmdqv.c]
function tegra241Vintf0HandleError(vintf: Tegra241Vintf): void {
  const cmdqv = vintf.cmdqv;
  for (let i = 0; i < LVCMDQ_ERR_MAP_NUM_64; i++) {
    let map = readErrMap64(cmdqv, vintf, i);
    while (map !== 0n) {
      const bitIdx = ffs64(map);
      const lidx = i * 64 + bitIdx;
      const vcmdq = vintf.lvcmdqs[lidx];
      map &= ~(1n << BigInt(bitIdx));
      if (!vcmdq) {
        cmdqv.err(`VINTF${vintf.idx}: error on LVCMDQ${lidx}, which the driver does not own`);
        continue;
      }
      const gerror = cmdqv.base.readl(vcmdq.page0 + TEGRA241_VCMDQ_GERROR);
      vcmdq.cmdq.skipErr();
      cmdqv.base.writel(gerror, vcmdq.page0 + TEGRA241_VCMDQ_GERRORN);
      cmdqv.stats.vintf0Errors++;
    }
  }
}

// kernel: __ffs64() [bitops.h]
function ffs64(v: bigint): number {
  let n = 0;
  while (((v >> BigInt(n)) & 1n) === 0n) n++;
  return n;
}

// kernel: tegra241_cmdqv_isr() [tegra241-cmdqv.c]
async function tegra241CmdqvIsr(cmdqv: Tegra241Cmdqv): Promise<'handled'> {
  const base = cmdqv.base;
  cmdqv.stats.irqs++;
  // Two 32-bit reads: the register is not 64-bit aligned.
  const hi = base.readl(TEGRA241_CMDQV_VINTF_ERR_MAP + 4);
  const lo = base.readl(TEGRA241_CMDQV_VINTF_ERR_MAP);
  let vintfMap = (BigInt(hi) << 32n) | BigInt(lo);
  const qmaps = [3, 2, 1, 0].map((m) => base.readl(TEGRA241_CMDQV_CMDQ_ERR_MAP(m)).toString(16).padStart(8, '0')).join(':');
  cmdqv.warn(`unexpected error reported. vintf_map: ${vintfMap.toString(16).padStart(16, '0')}, vcmdq_map ${qmaps}`);
  if ((vintfMap & 1n) !== 0n) {
    const v0 = cmdqv.vintfs[0];
    if (v0) tegra241Vintf0HandleError(v0);
    vintfMap &= ~1n;
  }
  while (vintfMap !== 0n) {
    const idx = ffs64(vintfMap);
    const vintf = cmdqv.vintfs[idx];
    if (vintf) tegra241VintfUserHandleError(vintf);
    else cmdqv.err(`VINTF${idx} reports an error but is not allocated`);
    vintfMap &= ~(1n << BigInt(idx));
  }
  return 'handled';
}

// ---- Command queue choice -----------------------------------------------------------------------

/** The commands a guest-owned VCMDQ takes. */
// kernel: tegra241_guest_vcmdq_supports_cmd() [tegra241-cmdqv.c]
export function tegra241GuestVcmdqSupportsCmd(ent: ArmSmmuCmdqEnt): boolean {
  switch (ent.opcode) {
    case CMDQ_OP_TLBI_NH_ASID:
    case CMDQ_OP_TLBI_NH_VA:
    case CMDQ_OP_ATC_INV:
      return true;
    default:
      return false;
  }
}

/** The issuing CPU's LVCMDQ of VINTF0, or null for the main queue. */
// kernel: tegra241_cmdqv_get_cmdq() [tegra241-cmdqv.c]
function tegra241CmdqvGetCmdq(smmu: ArmSmmuDevice, ent: ArmSmmuCmdqEnt): ArmSmmuCmdq | null {
  const cmdqv = tegra241CmdqvOf(smmu);
  if (!cmdqv || cmdqv.bypassVcmdq) return null;
  const vintf = cmdqv.vintfs[0];
  // The main queue while VINTF0 is not initialised.
  if (!vintf || !vintf.enabled) return null;
  // One LVCMDQ per CPU spreads the insertions (the kernel's "temporal solution").
  const lidx = rawSmpProcessorId() % cmdqv.numLvcmdqsPerVintf;
  const vcmdq = vintf.lvcmdqs[lidx];
  if (!vcmdq || !vcmdq.enabled) return null;
  // Commands the VCMDQ does not take go to the main queue.
  if (!armSmmuCmdqSupportsCmd(vcmdq.cmdq, ent)) return null;
  return vcmdq.cmdq;
}

// ---- HW reset -----------------------------------------------------------------------------------

/**
 * A CMD_SYNC on the main queue, so an ATC_INV timeout a (guest-owned) VCMDQ left pending is reported
 * now rather than to the next owner.
 */
// kernel: tegra241_vcmdq_hw_flush_timeout() [tegra241-cmdqv.c]
async function tegra241VcmdqHwFlushTimeout(vcmdq: Tegra241Vcmdq): Promise<void> {
  // No command of its own: issue_cmdlist's CMD_SYNC is the one needed.
  await vcmdq.cmdqv.smmu.cmdq.issueCmdlist(NO_CMDS, 0, true);
}

const NO_CMDS = new Uint32Array(0);

// kernel: tegra241_vcmdq_hw_deinit() [tegra241-cmdqv.c]
async function tegra241VcmdqHwDeinit(vcmdq: Tegra241Vcmdq): Promise<void> {
  const cmdqv = vcmdq.cmdqv;
  const base = cmdqv.base;
  const h = lvcmdqErrorHeader(vcmdq);
  try {
    await vcmdqWriteConfig(vcmdq, 0);
  } catch {
    cmdqv.err(`${h}GERRORN=${hex8(base.readl(vcmdq.page0 + TEGRA241_VCMDQ_GERRORN))}, GERROR=${hex8(base.readl(vcmdq.page0 + TEGRA241_VCMDQ_GERROR))}, CONS=${hex8(base.readl(vcmdq.page0 + TEGRA241_VCMDQ_CONS))}`);
  }
  await tegra241VcmdqHwFlushTimeout(vcmdq);
  base.writel(0, vcmdq.page0 + TEGRA241_VCMDQ_PROD);
  base.writel(0, vcmdq.page0 + TEGRA241_VCMDQ_CONS);
  base.writeq(0n, vcmdq.page1 + TEGRA241_VCMDQ_BASE);
  base.writeq(0n, vcmdq.page1 + TEGRA241_VCMDQ_CONS_INDX_BASE);
  const gerrorn = base.readl(vcmdq.page0 + TEGRA241_VCMDQ_GERRORN);
  const gerror = base.readl(vcmdq.page0 + TEGRA241_VCMDQ_GERROR);
  if (gerror !== gerrorn) {
    cmdqv.warn(`${h}uncleared error detected, resetting`);
    base.writel(gerror, vcmdq.page0 + TEGRA241_VCMDQ_GERRORN);
  }
  vcmdq.cmdq?.resetPointers();
}

// kernel: tegra241_vcmdq_hw_init() [tegra241-cmdqv.c]
async function tegra241VcmdqHwInit(vcmdq: Tegra241Vcmdq): Promise<void> {
  const cmdqv = vcmdq.cmdqv;
  const base = cmdqv.base;
  await tegra241VcmdqHwDeinit(vcmdq);
  // hyp_own is final now (tegra241_vintf_hw_init read it back): a guest-owned queue takes only
  // the guest commands.
  if (!vcmdq.vintf.hypOwn) vcmdq.cmdq.supportsCmd = tegra241GuestVcmdqSupportsCmd;
  const q = vcmdq.cmdq.q;
  base.writeq((BigInt(q.base) & VCMDQ_ADDR_MASK) | BigInt(FIELD_PREP(VCMDQ_LOG2SIZE, q.maxNShift)), vcmdq.page1 + TEGRA241_VCMDQ_BASE);
  try {
    await vcmdqWriteConfig(vcmdq, VCMDQ_EN);
  } catch (e) {
    cmdqv.err(`${lvcmdqErrorHeader(vcmdq)}GERRORN=${hex8(base.readl(vcmdq.page0 + TEGRA241_VCMDQ_GERRORN))}, GERROR=${hex8(base.readl(vcmdq.page0 + TEGRA241_VCMDQ_GERROR))}, CONS=${hex8(base.readl(vcmdq.page0 + TEGRA241_VCMDQ_CONS))}`);
    throw e;
  }
}

// kernel: tegra241_vcmdq_unmap_lvcmdq() [tegra241-cmdqv.c]
function tegra241VcmdqUnmapLvcmdq(vcmdq: Tegra241Vcmdq): void {
  const base = vcmdq.cmdqv.base;
  const regval = base.readl(TEGRA241_CMDQV_CMDQ_ALLOC(vcmdq.idx));
  base.writel((regval & ~CMDQV_CMDQ_ALLOCATED) >>> 0, TEGRA241_CMDQV_CMDQ_ALLOC(vcmdq.idx));
}

// kernel: tegra241_vcmdq_map_lvcmdq() [tegra241-cmdqv.c]
function tegra241VcmdqMapLvcmdq(vcmdq: Tegra241Vcmdq): void {
  const base = vcmdq.cmdqv.base;
  const regval = base.readl(TEGRA241_CMDQV_CMDQ_ALLOC(vcmdq.idx));
  base.writel((regval | CMDQV_CMDQ_ALLOCATED) >>> 0, TEGRA241_CMDQV_CMDQ_ALLOC(vcmdq.idx));
}

/** LVCMDQs unmapped in descending order, VINTF disabled, SID pairs cleared. */
// kernel: tegra241_vintf_hw_deinit() [tegra241-cmdqv.c]
async function tegra241VintfHwDeinit(vintf: Tegra241Vintf): Promise<void> {
  const cmdqv = vintf.cmdqv;
  for (let lidx = cmdqv.numLvcmdqsPerVintf - 1; lidx >= 0; lidx--) {
    const vcmdq = vintf.lvcmdqs[lidx];
    if (!vcmdq) continue;
    await tegra241VcmdqHwDeinit(vcmdq);
    tegra241VcmdqUnmapLvcmdq(vcmdq);
  }
  await vintfWriteConfig(vintf, 0);
  for (let sidx = 0; sidx < cmdqv.numSidsPerVintf; sidx++) {
    cmdqv.base.writel(0, vintf.base + TEGRA241_VINTF_SID_MATCH(sidx));
    cmdqv.base.writel(0, vintf.base + TEGRA241_VINTF_SID_REPLACE(sidx));
  }
}

// kernel: tegra241_vintf_hw_init() [tegra241-cmdqv.c]
async function tegra241VintfHwInit(vintf: Tegra241Vintf, hypOwn: boolean): Promise<void> {
  const cmdqv = vintf.cmdqv;
  await tegra241VintfHwDeinit(vintf);
  // HYP_OWN is wired to zero in a guest, whatever is written here.
  const regval = (FIELD_PREP(VINTF_HYP_OWN, hypOwn ? 1 : 0) | FIELD_PREP(VINTF_VMID, vintf.vmid)) >>> 0;
  cmdqv.base.writel(regval, vintf.base + TEGRA241_VINTF_CONFIG);
  await vintfWriteConfig(vintf, (regval | VINTF_EN) >>> 0);
  // So read it back: this is how a guest kernel learns it is one.
  vintf.hypOwn = (cmdqv.base.readl(vintf.base + TEGRA241_VINTF_CONFIG) & VINTF_HYP_OWN) !== 0;
  // The hardware needs LVCMDQs mapped in ascending order.
  for (let lidx = 0; lidx < cmdqv.numLvcmdqsPerVintf; lidx++) {
    const vcmdq = vintf.lvcmdqs[lidx];
    if (!vcmdq) continue;
    tegra241VcmdqMapLvcmdq(vcmdq);
    try {
      await tegra241VcmdqHwInit(vcmdq);
    } catch (e) {
      await tegra241VintfHwDeinit(vintf);
      throw e;
    }
  }
}

/** Reset the CMDQV and bring VINTF0 up for the host. */
// kernel: tegra241_cmdqv_hw_reset() [tegra241-cmdqv.c]
async function tegra241CmdqvHwReset(smmu: ArmSmmuDevice): Promise<void> {
  const cmdqv = tegra241CmdqvOf(smmu)!;
  const regval = cmdqv.base.readl(TEGRA241_CMDQV_CONFIG);
  await cmdqvWriteConfig(cmdqv, (regval & ~CMDQV_EN) >>> 0);
  await cmdqvWriteConfig(cmdqv, (regval | CMDQV_EN) >>> 0);
  // Pre-assign every global VCMDQ to its VINTF as an LVCMDQ (mapped later, in order).
  let qidx = 0;
  for (let idx = 0; idx < cmdqv.numVintfs; idx++) {
    for (let lidx = 0; lidx < cmdqv.numLvcmdqsPerVintf; lidx++) {
      const v = (FIELD_PREP(CMDQV_CMDQ_ALLOC_VINTF, idx) | FIELD_PREP(CMDQV_CMDQ_ALLOC_LVCMDQ, lidx)) >>> 0;
      cmdqv.base.writel(v, TEGRA241_CMDQV_CMDQ_ALLOC(qidx++));
    }
  }
  await tegra241VintfHwInit(cmdqv.vintfs[0]!, true);
  cmdqv.info(`VINTF0 enabled (${cmdqv.vintfs[0]!.hypOwn ? 'host-owned' : 'HYP_OWN reads 0: guest command set only'}) with ${cmdqv.numLvcmdqsPerVintf} VCMDQs`);
}

// ---- Resource helpers ---------------------------------------------------------------------------

/** An ArmSmmuCmdq over a VCMDQ's registers. */
// kernel: tegra241_vcmdq_alloc_smmu_cmdq() [tegra241-cmdqv.c]
function tegra241VcmdqAllocSmmuCmdq(vcmdq: Tegra241Vcmdq): void {
  const cmdqv = vcmdq.cmdqv;
  const smmu = cmdqv.smmu;
  const name = `vcmdq${vcmdq.idx}`;
  // The queue size is capped by IDR1.CMDQS; the allocation is naturally aligned.
  const shift = Math.min(CMDQ_MAX_SZ_SHIFT, FIELD_GET(IDR1_CMDQS, smmu.base.readl(ARM_SMMU_IDR1)));
  const buf = smmu.allocCoherent(2 ** shift * CMDQ_ENT_DWORDS * 8, name);
  const q = new ArmSmmuQueue(name, smmu.ram, buf, shift, CMDQ_ENT_DWORDS, cmdqv.base, vcmdq.page0 + TEGRA241_VCMDQ_PROD, vcmdq.page0 + TEGRA241_VCMDQ_CONS);
  const host: CmdqHost = { name: `${smmu.name} ${name}`, port: smmu.port, log: smmu.log, options: smmu.options };
  vcmdq.cmdq = new ArmSmmuCmdq(host, q);
  // (kernel: arm_smmu_cmdq_needs_busy_polling() is true for every VCMDQ.)
  vcmdq.cmdq.busyPolling = true;
  smmu.secondaryCmdqs.add(vcmdq.cmdq);
}

// kernel: tegra241_vintf_init_lvcmdq() [tegra241-cmdqv.c]
function tegra241VintfInitLvcmdq(vintf: Tegra241Vintf, lidx: number, vcmdq: Tegra241Vcmdq): void {
  const cmdqv = vintf.cmdqv;
  vcmdq.idx = vintf.idx * cmdqv.numLvcmdqsPerVintf + lidx;
  vcmdq.lidx = lidx;
  vcmdq.page0 = TEGRA241_VINTFi_LVCMDQ_PAGE0(vintf.idx, lidx);
  vcmdq.page1 = TEGRA241_VINTFi_LVCMDQ_PAGE1(vintf.idx, lidx);
  vintf.lvcmdqs[lidx] = vcmdq;
}

// kernel: tegra241_vintf_alloc_lvcmdq() [tegra241-cmdqv.c]
function tegra241VintfAllocLvcmdq(vintf: Tegra241Vintf, lidx: number): Tegra241Vcmdq {
  const vcmdq = new Tegra241Vcmdq(vintf.cmdqv, vintf);
  tegra241VintfInitLvcmdq(vintf, lidx, vcmdq);
  try {
    tegra241VcmdqAllocSmmuCmdq(vcmdq);
  } catch (e) {
    vintf.lvcmdqs[lidx] = null;
    throw e;
  }
  return vcmdq;
}

// kernel: tegra241_vintf_free_lvcmdq() [tegra241-cmdqv.c]
function tegra241VintfFreeLvcmdq(vintf: Tegra241Vintf, lidx: number): void {
  const vcmdq = vintf.lvcmdqs[lidx];
  vintf.lvcmdqs[lidx] = null;
  if (vcmdq?.cmdq) {
    vintf.cmdqv.smmu.secondaryCmdqs.delete(vcmdq.cmdq);
    vintf.cmdqv.smmu.freeCoherent(vcmdq.cmdq.q.buf);
  }
}

/** A VINTF index in [0, maxIdx]. */
// kernel: tegra241_cmdqv_init_vintf() [tegra241-cmdqv.c]
function tegra241CmdqvInitVintf(cmdqv: Tegra241Cmdqv, maxIdx: number, vintf: Tegra241Vintf): void {
  let idx: number;
  try {
    idx = cmdqv.vintfIds.allocRange(0, maxIdx);
  } catch {
    throw new KernelError('ENOSPC', `${cmdqv.dev.name}: no more available vintf`);
  }
  vintf.idx = idx;
  vintf.base = TEGRA241_VINTF(idx);
  vintf.lvcmdqs = new Array<Tegra241Vcmdq | null>(cmdqv.numLvcmdqsPerVintf).fill(null);
  cmdqv.vintfs[idx] = vintf;
}

// kernel: tegra241_cmdqv_deinit_vintf() [tegra241-cmdqv.c]
function tegra241CmdqvDeinitVintf(cmdqv: Tegra241Cmdqv, idx: number): void {
  cmdqv.vintfIds.free(idx);
  cmdqv.vintfs[idx] = null;
}

// kernel: tegra241_cmdqv_remove_vintf() [tegra241-cmdqv.c]
async function tegra241CmdqvRemoveVintf(cmdqv: Tegra241Cmdqv, idx: number): Promise<void> {
  const vintf = cmdqv.vintfs[idx];
  if (!vintf) return;
  await tegra241VintfHwDeinit(vintf);
  for (let lidx = 0; lidx < cmdqv.numLvcmdqsPerVintf; lidx++) if (vintf.lvcmdqs[lidx]) tegra241VintfFreeLvcmdq(vintf, lidx);
  tegra241CmdqvDeinitVintf(cmdqv, idx);
}

// kernel: tegra241_cmdqv_remove() [tegra241-cmdqv.c]
async function tegra241CmdqvRemove(smmu: ArmSmmuDevice): Promise<void> {
  const cmdqv = tegra241CmdqvOf(smmu);
  if (!cmdqv) return;
  for (let idx = 0; idx < cmdqv.numVintfs; idx++) {
    if (!cmdqv.vintfs[idx]) continue;
    // Only VINTF0 should remain by now.
    if (idx > 0) cmdqv.warn(`VINTF${idx} still allocated at remove`);
    await tegra241CmdqvRemoveVintf(cmdqv, idx);
  }
}

/** VINTF0 with all its LVCMDQs, for the host. */
// kernel: tegra241_cmdqv_init_structures() [tegra241-cmdqv.c]
function tegra241CmdqvInitStructures(smmu: ArmSmmuDevice): void {
  const cmdqv = tegra241CmdqvOf(smmu)!;
  const vintf = new Tegra241Vintf(cmdqv);
  tegra241CmdqvInitVintf(cmdqv, 0, vintf);
  for (let lidx = 0; lidx < cmdqv.numLvcmdqsPerVintf; lidx++) tegra241VintfAllocLvcmdq(vintf, lidx);
  smmu.implOps = tegra241CmdqvImplOps;
}

/** The kernel's tegra241_cmdqv_impl_ops */
const tegra241CmdqvImplOps: ArmSmmuImplOps = {
  getSecondaryCmdq: tegra241CmdqvGetCmdq,
  deviceReset: tegra241CmdqvHwReset,
  deviceRemove: tegra241CmdqvRemove,
  hwInfo: (smmu, type) => tegra241CmdqvHwInfo(smmu, type),
  viommuTypes: [IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV],
  vsmmuInit: (smmu, viommu, vmid, data) => tegra241CmdqvInitVintfUser(smmu, viommu, vmid, data),
};

/** The kernel's init_ops in __tegra241_cmdqv_probe() */
const tegra241CmdqvInitOps: ArmSmmuImplOps = {
  initStructures: tegra241CmdqvInitStructures,
  deviceRemove: tegra241CmdqvRemove,
};

// ---- Discovery and probe ------------------------------------------------------------------------

export interface Tegra241CmdqvResource {
  /** The CMDQV aperture. */
  start: number;
  size: number;
  /** Its error interrupt, if firmware gives one. */
  irq: IrqSpec | null;
}

/**
 * The CMDQV's memory window and interrupt from the companion device (smmu.implDev), or null when it
 * has no memory resource.
 */
// kernel: tegra241_cmdqv_find_acpi_resource() [tegra241-cmdqv.c]
export function tegra241CmdqvFindResource(smmu: ArmSmmuDevice): Tegra241CmdqvResource | null {
  const dev = smmu.implDev;
  if (!(dev instanceof PlatformDevice)) return null;
  const res = platformGetResource(dev, 0);
  if (!res) return null;
  const irq = platformGetIrqOptional(dev, 0);
  if (!irq) smmu.log.warn(dev.name, 'no interrupt. errors will not be reported', LOG_NS);
  return { start: res.start, size: res.size, irq };
}

/**
 * DT discovery (this project's binding): the SMMU node's `nvidia,cmdqv` names the CMDQV node; its
 * platform device becomes smmu.implDev. The DT counterpart of the kernel's
 * acpi_smmu_dsdt_probe_tegra241_cmdqv().
 */
export function armSmmuDtProbeTegra241Cmdqv(smmu: ArmSmmuDevice): void {
  const node = smmu.dev.ofNode;
  const tree = smmu.dev.core.dt;
  if (!node || !tree || !node.has(TEGRA241_CMDQV_DT_PROP)) return;
  const cells = node.cells(TEGRA241_CMDQV_DT_PROP) ?? [];
  if (cells.length !== 1) {
    smmu.warn(`${TEGRA241_CMDQV_DT_PROP} must be one phandle; CMDQV ignored`);
    return;
  }
  const cnode = tree.byPhandle(cells[0]);
  if (!cnode) {
    smmu.warn(`${TEGRA241_CMDQV_DT_PROP} references phandle ${cells[0]}, which no node has; CMDQV ignored`);
    return;
  }
  if (!cnode.isCompatible(TEGRA241_CMDQV_COMPATIBLE)) {
    smmu.warn(`${cnode.path} is not compatible with "${TEGRA241_CMDQV_COMPATIBLE}"; CMDQV ignored`);
    return;
  }
  if (!cnode.available) return;
  const dev = smmu.dev.core.findDeviceByOfNode(cnode);
  if (!dev) {
    smmu.warn(`${cnode.path}: no device for the CMDQV node; CMDQV ignored`);
    return;
  }
  smmu.implDev = dev;
  smmu.options |= ARM_SMMU_OPT_TEGRA241_CMDQV;
  smmu.info(`found companion CMDQV device: ${dev.name}`);
}

// kernel: __tegra241_cmdqv_probe() [tegra241-cmdqv.c]
function tegra241CmdqvProbeOne(smmu: ArmSmmuDevice, res: Tegra241CmdqvResource, params: Tegra241CmdqvParams): Tegra241Cmdqv {
  const dev = smmu.implDev!;
  const cmdqv = new Tegra241Cmdqv(smmu, dev, params);
  cmdqv.base = devmIoremap(smmu.dev, res.start, res.size);
  cmdqv.basePhys = res.start;
  if (params.disableCmdqv) {
    const regval = cmdqv.base.readl(TEGRA241_CMDQV_CONFIG);
    cmdqv.base.writel((regval & ~CMDQV_EN) >>> 0, TEGRA241_CMDQV_CONFIG);
    throw new KernelError('ENODEV', `${dev.name}: disabled by arm-smmu-v3.disable_cmdqv`);
  }
  const regval = cmdqv.base.readl(TEGRA241_CMDQV_PARAM);
  cmdqv.version = FIELD_GET(CMDQV_VER, regval);
  cmdqv.numVintfs = 1 << FIELD_GET(CMDQV_NUM_VINTF_LOG2, regval);
  cmdqv.numVcmdqs = 1 << FIELD_GET(CMDQV_NUM_VCMDQ_LOG2, regval);
  cmdqv.numLvcmdqsPerVintf = cmdqv.numVcmdqs / cmdqv.numVintfs;
  cmdqv.numSidsPerVintf = 1 << FIELD_GET(CMDQV_NUM_SID_PER_VM_LOG2, regval);
  if (cmdqv.numLvcmdqsPerVintf < 1) throw new KernelError('EINVAL', `${dev.name}: PARAM ${hex(regval)}: fewer VCMDQs than VINTFs`);
  const needed = TEGRA241_VINTFi_PAGE0(cmdqv.numVintfs);
  if (res.size < needed) throw new KernelError('EINVAL', `${dev.name}: region of ${hex(res.size)} bytes is smaller than the ${hex(needed)} ${cmdqv.numVintfs} VINTFs need`);
  cmdqv.vintfs = new Array<Tegra241Vintf | null>(cmdqv.numVintfs).fill(null);
  if (res.irq) {
    const irq = res.irq;
    devmRequestThreadedIrq(smmu.dev, irq, null, () => tegra241CmdqvIsr(cmdqv), 'tegra241-cmdqv');
    cmdqv.irq = irq;
  }
  return cmdqv;
}

/**
 * Probe the CMDQV as the SMMU's implementation: on success the SMMU gets the init-level impl ops and
 * `smmu.impl`; ENODEV (keep the plain SMMU) when there is nothing usable.
 */
// kernel: tegra241_cmdqv_probe() [tegra241-cmdqv.c]
export function tegra241CmdqvProbe(smmu: ArmSmmuDevice, params: Tegra241CmdqvParams): void {
  const res = tegra241CmdqvFindResource(smmu);
  if (!res) {
    smmu.options &= ~ARM_SMMU_OPT_TEGRA241_CMDQV;
    throw new KernelError('ENODEV', `${smmu.name}: no CMDQV memory resource: falling back to the standard SMMU CMDQ`);
  }
  let cmdqv: Tegra241Cmdqv;
  try {
    cmdqv = tegra241CmdqvProbeOne(smmu, res, params);
  } catch (e) {
    // Any failure here falls back to the standard SMMU CMDQ.
    smmu.options &= ~ARM_SMMU_OPT_TEGRA241_CMDQV;
    const why = e instanceof Error ? e.message : String(e);
    throw new KernelError('ENODEV', `${smmu.implDev?.name ?? smmu.name}: ${why}; falling back to standard SMMU CMDQ`);
  }
  smmu.impl = cmdqv;
  smmu.implOps = tegra241CmdqvInitOps;
  cmdqv.info(`CMDQV v${cmdqv.version}: ${cmdqv.numVintfs} VINTFs, ${cmdqv.numVcmdqs} VCMDQs (${cmdqv.numLvcmdqsPerVintf} per VINTF), ${cmdqv.numSidsPerVintf} SID pairs per VINTF`);
}

// ---- User (guest-owned) VINTFs ------------------------------------------------------------------

/**
 * A VINTF for a VM: HYP_OWN=0 with `vmid`, no LVCMDQs (the user allocates them). Its page0
 * (`vintf.page0Phys`, 64 KiB) is what the VMM maps into the guest.
 * (The VINTF half of the kernel's tegra241_cmdqv_init_vintf_user(); tegra241CmdqvInitVintfUser()
 * below is the iommufd half.)
 */
export async function tegra241CmdqvAllocUserVintf(cmdqv: Tegra241Cmdqv, vmid: number): Promise<Tegra241Vintf> {
  const vintf = new Tegra241Vintf(cmdqv);
  vintf.vmid = vmid;
  tegra241CmdqvInitVintf(cmdqv, cmdqv.numVintfs - 1, vintf);
  try {
    await tegra241VintfHwInit(vintf, false);
  } catch (e) {
    tegra241CmdqvDeinitVintf(cmdqv, vintf.idx);
    throw e;
  }
  return vintf;
}

/** Disable a user VINTF and release it. */
// kernel: tegra241_cmdqv_destroy_vintf_user() [tegra241-cmdqv.c]
export async function tegra241CmdqvFreeUserVintf(vintf: Tegra241Vintf): Promise<void> {
  if (vintf.idx === 0) throw new KernelError('EINVAL', 'VINTF0 belongs to the host kernel');
  await tegra241CmdqvRemoveVintf(vintf.cmdqv, vintf.idx);
}

/** Route a guest's virtual StreamID to a physical one; returns the pair slot. */
// kernel: tegra241_vintf_init_vsid() [tegra241-cmdqv.c]
export function tegra241VintfInitVsid(vintf: Tegra241Vintf, vsid: number, psid: number): number {
  const cmdqv = vintf.cmdqv;
  if (!Number.isInteger(vsid) || vsid < 0 || vsid > 0xf_ffff) throw new KernelError('EINVAL', `virtual StreamID ${vsid} does not fit SID_MATCH`);
  let sidx: number;
  try {
    sidx = vintf.sids.allocRange(0, cmdqv.numSidsPerVintf - 1);
  } catch {
    throw new KernelError('ENOSPC', `VINTF${vintf.idx}: all ${cmdqv.numSidsPerVintf} SID pairs are in use`);
  }
  cmdqv.base.writel(psid, vintf.base + TEGRA241_VINTF_SID_REPLACE(sidx));
  cmdqv.base.writel(((vsid << 1) | 1) >>> 0, vintf.base + TEGRA241_VINTF_SID_MATCH(sidx));
  return sidx;
}

// kernel: tegra241_vintf_destroy_vsid() [tegra241-cmdqv.c]
export function tegra241VintfDestroyVsid(vintf: Tegra241Vintf, sidx: number): void {
  if (!vintf.sids.has(sidx)) throw new KernelError('EINVAL', `VINTF${vintf.idx}: SID pair ${sidx} is not in use`);
  vintf.cmdqv.base.writel(0, vintf.base + TEGRA241_VINTF_SID_MATCH(sidx));
  vintf.cmdqv.base.writel(0, vintf.base + TEGRA241_VINTF_SID_REPLACE(sidx));
  vintf.sids.free(sidx);
}

/**
 * Map LVCMDQ `lidx` of a user VINTF onto a queue in user memory at `basePa` (`length` bytes) and
 * write its BASE; the user enables it through the VINTF page0. Ascending order only.
 * (the hw_queue checks and programming)
 */
// kernel: tegra241_vintf_alloc_lvcmdq_user() [tegra241-cmdqv.c]
export function tegra241VintfAllocLvcmdqUser(vintf: Tegra241Vintf, lidx: number, basePa: number, length: number): Tegra241Vcmdq {
  const cmdqv = vintf.cmdqv;
  if (vintf.hypOwn) throw new KernelError('EINVAL', `VINTF${vintf.idx} is host-owned`);
  if (!Number.isInteger(lidx) || lidx < 0 || lidx >= cmdqv.numLvcmdqsPerVintf) throw new KernelError('EINVAL', `LVCMDQ ${lidx} is not below ${cmdqv.numLvcmdqsPerVintf}`);
  if (vintf.lvcmdqs[lidx]) throw new KernelError('EEXIST', `VINTF${vintf.idx} LVCMDQ${lidx} is allocated`);
  if (lidx > 0 && !vintf.lvcmdqs[lidx - 1]) throw new KernelError('EIO', `VINTF${vintf.idx} LVCMDQ${lidx - 1} must be allocated first (ascending order)`);
  const maxLen = 2 ** (FIELD_GET(IDR1_CMDQS, cmdqv.smmu.base.readl(ARM_SMMU_IDR1)) + 4);
  if (!Number.isInteger(length) || length < 32 || (length & (length - 1)) !== 0 || length > maxLen) {
    throw new KernelError('EINVAL', `queue length ${length} is not a power of 2 in [32, ${maxLen}]`);
  }
  if (!Number.isSafeInteger(basePa) || basePa < 0 || basePa >= 2 ** 48 || basePa % length !== 0) {
    throw new KernelError('EINVAL', `queue base 0x${basePa.toString(16)} is not a 48-bit address aligned to ${length}`);
  }
  const vcmdq = new Tegra241Vcmdq(cmdqv, vintf);
  tegra241VintfInitLvcmdq(vintf, lidx, vcmdq);
  tegra241VcmdqMapLvcmdq(vcmdq);
  vcmdq.userBase = (BigInt(basePa) & VCMDQ_ADDR_MASK) | BigInt(Math.log2(length / 16));
  cmdqv.base.writeq(vcmdq.userBase, vcmdq.page1 + TEGRA241_VCMDQ_BASE);
  return vcmdq;
}

// kernel: tegra241_vintf_destroy_lvcmdq_user() [tegra241-cmdqv.c]
export async function tegra241VintfFreeLvcmdqUser(vcmdq: Tegra241Vcmdq): Promise<void> {
  const vintf = vcmdq.vintf;
  if (vintf.lvcmdqs[vcmdq.lidx + 1]) throw new KernelError('EBUSY', `VINTF${vintf.idx} LVCMDQ${vcmdq.lidx + 1} must be freed first (descending order)`);
  await tegra241VcmdqHwDeinit(vcmdq);
  tegra241VcmdqUnmapLvcmdq(vcmdq);
  vintf.lvcmdqs[vcmdq.lidx] = null;
}

// ---- iommufd: the TEGRA241_CMDQV vIOMMU ----------------------------------------------------------

/** The kernel's struct iommu_viommu_tegra241_cmdqv — out_vintf_mmap_offset, out_vintf_mmap_length (u64 each). */
export const IOMMU_VIOMMU_TEGRA241_CMDQV_WORDS = 4;
/** The kernel's struct iommu_hw_info_tegra241_cmdqv — flags (u32); version, log2vcmdqs, log2vsids, reserved (u8). */
export const IOMMU_HW_INFO_TEGRA241_CMDQV_WORDS = 2;

/** The user VINTF behind each TEGRA241_CMDQV vIOMMU (kernel: container_of(viommu, struct tegra241_vintf, vsmmu.core)). */
const vintfOfViommu = new WeakMap<IommufdViommu, Tegra241Vintf>();

/** The VINTF of a TEGRA241_CMDQV vIOMMU, or null. */
export function tegra241VintfOfViommu(viommu: IommufdViommu): Tegra241Vintf | null {
  return vintfOfViommu.get(viommu) ?? null;
}

/** What a VMM needs to describe the CMDQV to its guest. */
// kernel: tegra241_cmdqv_hw_info() [tegra241-cmdqv.c]
function tegra241CmdqvHwInfo(smmu: ArmSmmuDevice, type: number): IommuHwInfo | null {
  const cmdqv = tegra241CmdqvOf(smmu);
  if (!cmdqv || type !== IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV) return null;
  const data = new Uint32Array(IOMMU_HW_INFO_TEGRA241_CMDQV_WORDS);
  data[1] = (cmdqv.version | (Math.log2(cmdqv.numLvcmdqsPerVintf) << 8) | (Math.log2(cmdqv.numSidsPerVintf) << 16)) >>> 0;
  return { type: IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV, data };
}

/**
 * A TEGRA241_CMDQV vIOMMU: a user VINTF (HYP_OWN=0, the vSMMU's VMID) whose page0 user space may
 * mmap (offset and length written back into `data`), its SID pairs programmed per vDEVICE, its
 * LVCMDQs given as HW queues, its errors posted as TEGRA241_CMDQV vEVENTs. Invalidations user space
 * still issues through the vIOMMU go to the main queue (the vSMMU's ops).
 */
// kernel: tegra241_cmdqv_init_vintf_user() [tegra241-cmdqv.c]
async function tegra241CmdqvInitVintfUser(smmu: ArmSmmuDevice, viommu: IommufdViommu, vmid: number, data: Uint32Array | null): Promise<Partial<IommufdViommuOps>> {
  const cmdqv = tegra241CmdqvOf(smmu);
  if (!cmdqv) throw new KernelError('EOPNOTSUPP', `${smmu.name} has no CMDQV`);
  if (!data || data.length < IOMMU_VIOMMU_TEGRA241_CMDQV_WORDS) throw new KernelError('EINVAL', `a TEGRA241_CMDQV vIOMMU needs its ${IOMMU_VIOMMU_TEGRA241_CMDQV_WORDS}-word data structure`);
  const vintf = await tegra241CmdqvAllocUserVintf(cmdqv, vmid);
  // Only page0 (the LVCMDQs' CONS/PROD/CONFIG/GERRORN) is the user's; page1 (BASE) stays the kernel's.
  const offset = viommu.allocMmap(vintf.page0Phys, SZ_64K);
  vintf.onUserError = (map) => {
    const rec = Uint32Array.of(Number(map[0] & 0xffff_ffffn), Number(map[0] >> 32n), Number(map[1] & 0xffff_ffffn), Number(map[1] >> 32n));
    try {
      viommu.reportEvent(IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV, rec);
    } catch (e) {
      cmdqv.warn(`VINTF${vintf.idx}: error not reported to vIOMMU ${viommu.id}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  vintfOfViommu.set(viommu, vintf);
  data[0] = offset % 0x1_0000_0000;
  data[1] = Math.floor(offset / 0x1_0000_0000);
  data[2] = SZ_64K;
  data[3] = 0;
  return {
    destroy: async (v) => {
      v.destroyMmap(offset);
      vintfOfViommu.delete(v);
      await tegra241CmdqvFreeUserVintf(vintf);
    },
    vdeviceInit: (vdev) => tegra241VdeviceInit(vintf, vdev),
    vdeviceDestroy: (vdev) => {
      const sidx = vdev.driverData;
      if (typeof sidx === 'number') tegra241VintfDestroyVsid(vintf, sidx);
    },
    hwQueueInitPhys: (hwq, basePa) => tegra241HwQueueInitPhys(vintf, hwq, basePa),
    hwQueueDestroy: async (hwq) => {
      if (hwq.driverData instanceof Tegra241Vcmdq) await tegra241VintfFreeLvcmdqUser(hwq.driverData);
    },
  };
}

/** A vDEVICE's vSID → its pSID in a SID pair (devices with one StreamID, as the kernel WARNs otherwise). */
function tegra241VdeviceInit(vintf: Tegra241Vintf, vdev: IommufdVdevice): void {
  const master = masterOf(vdev.idev.dev);
  if (master.streams.length !== 1) throw new KernelError('EINVAL', `${vdev.idev.dev.name} has ${master.streams.length} StreamIDs; a SID pair routes one`);
  vdev.driverData = tegra241VintfInitVsid(vintf, vdev.virtId, master.streams[0]);
}

/** IOMMU_HW_QUEUE_ALLOC of type TEGRA241_CMDQV: LVCMDQ `index`, in order, after the one below it. */
function tegra241HwQueueInitPhys(vintf: Tegra241Vintf, hwq: IommufdHwQueue, basePa: number): void {
  if (hwq.hwQueueType !== IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV) throw new KernelError('EOPNOTSUPP', `hardware queue type ${hwq.hwQueueType} is not TEGRA241_CMDQV`);
  const vcmdq = tegra241VintfAllocLvcmdqUser(vintf, hwq.index, basePa, hwq.length);
  hwq.driverData = vcmdq;
  // iommufd destroys this queue before the one below it.
  const prev = [...hwq.viommu.hwQueues].find((q) => q.index === hwq.index - 1);
  if (prev) hwq.depend(prev);
}

// ---- Reports --------------------------------------------------------------------------------------

export interface Tegra241CmdqvReport {
  device: string;
  base: number;
  version: number;
  enabled: boolean;
  bypassVcmdq: boolean;
  numVintfs: number;
  numVcmdqs: number;
  lvcmdqsPerVintf: number;
  sidsPerVintf: number;
  vintfs: {
    idx: number;
    enabled: boolean;
    hypOwn: boolean;
    vmid: number;
    vcmdqs: { idx: number; lidx: number; enabled: boolean; entries: number; commands: number; syncs: number; errors: number; guestFilter: boolean }[];
  }[];
}

/** What the driver holds of a CMDQV, for boot reports. */
export function tegra241CmdqvReport(cmdqv: Tegra241Cmdqv): Tegra241CmdqvReport {
  return {
    device: cmdqv.dev.name,
    base: cmdqv.basePhys,
    version: cmdqv.version,
    enabled: cmdqv.enabled,
    bypassVcmdq: cmdqv.bypassVcmdq,
    numVintfs: cmdqv.numVintfs,
    numVcmdqs: cmdqv.numVcmdqs,
    lvcmdqsPerVintf: cmdqv.numLvcmdqsPerVintf,
    sidsPerVintf: cmdqv.numSidsPerVintf,
    vintfs: cmdqv.vintfs.filter((v): v is Tegra241Vintf => v !== null).map((v) => ({
      idx: v.idx,
      enabled: v.enabled,
      hypOwn: v.hypOwn,
      vmid: v.vmid,
      vcmdqs: v.lvcmdqs.filter((q): q is Tegra241Vcmdq => q !== null).map((q) => ({
        idx: q.idx,
        lidx: q.lidx,
        enabled: q.enabled,
        entries: q.cmdq ? q.cmdq.q.entries : 0,
        commands: q.cmdq ? q.cmdq.stats.commands : 0,
        syncs: q.cmdq ? q.cmdq.stats.syncs : 0,
        errors: q.cmdq ? q.cmdq.stats.errors : 0,
        guestFilter: q.cmdq ? q.cmdq.supportsCmd !== null : false,
      })),
    })),
  };
}
