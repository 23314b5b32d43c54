/**
 * A booted kernel: what `bootKernel` builds on a machine, and what `shutdown`/`kexec` throw away.
 *
 * Boot reads the firmware the boot loader left (the DTB, through the CPU port), parses the command
 * line, brings up the driver core with the built-in drivers and populates the platform bus from the
 * device tree (kernel: start_kernel() → do_initcalls() → of_platform_default_populate_init()).
 * Everything a kernel owns hangs off this object; none of it is global, so a kexec can boot a second
 * kernel on the same machine while the first one's objects are simply dropped.
 */
import type { CpuPort } from '../hw/cpu-port.js';
import { DriverCore, type DeferredProbe, type ShutdownReport } from '../bus/driver-core.js';
import type { Driver } from '../bus/driver.js';
import { KernelError } from '../bus/errno.js';
import { FirmwareError } from '../bus/firmware-error.js';
import { acpiBuildDeviceTree, acpiFirmwareOf, parseAcpiTables } from '../bus/acpi/acpi-boot.js';
import { parseFdt } from '../bus/of/fdt.js';
import type { DeviceTree } from '../bus/of/tree.js';
import { ofPlatformPopulate } from '../bus/platform.js';
import { IommuSubsystem, iommuBusNotify, iommuDmaCleanup, iommuDmaConfigure } from '../core/iommu.js';
import { iommuFaultShutdown } from '../core/iommu-fault.js';
import { MmContext } from '../mm/mm.js';
import { PageAllocator } from '../mm/page-alloc.js';
import { ProcessTable } from '../mm/process.js';
import type { MemoryRange, ReservedRange } from '../mm/page-alloc.js';
import { CmdlineError, misspeltParamHints, parseCmdline, unknownParamsLine, type KernelParams } from './cmdline.js';
import { parseElfCoreHeader, reserveCrashkernel, type VmcoreSegment } from './crash-dump.js';
import type { CrashImage } from './kdump.js';
import { scanFirmwareMemory } from './memblock.js';
import { builtinDrivers, type DriverBuildOptions, type DriverSelection } from './drivers.js';

const LOG_NS = 'iommu:kernel';

/** The machine as a kernel sees it: only its CPU port. */
export interface BootTarget {
  readonly cpu: CpuPort;
}

export interface BootOptions extends DriverBuildOptions {
  /** Kernel command line; defaults to the DT's /chosen/bootargs. */
  cmdline?: string;
  /**
   * Which drivers are built in: `all` (default), or `iommu-unaware` (a kernel with no SMMU drivers, as
   * the kexec discussion's target kernel), or an explicit list.
   */
  drivers?: DriverSelection;
  /** Extra drivers registered after the built-in ones (a scenario's own device driver). */
  extraDrivers?: readonly Driver[];
  /** Which kernel this is on the machine (set by kexec). */
  instance?: number;
  /** The device tree the kexec loader hands over (default: the one firmware left, port.firmware.dtb). */
  dtb?: Uint8Array;
  /**
   * Refuse to boot with command line parameters nobody declared (EINVAL naming them), instead of
   * warning and passing them on to user space as Linux does.
   */
  strictParams?: boolean;
}

export type KernelState = 'booting' | 'running' | 'shut-down' | 'panicked' | 'gone';

/** What boot learnt about memory beyond the page allocator's view. */
export interface KernelMemoryInfo {
  /** RAM this kernel may use (a crash kernel: its reservation only). */
  memory: readonly MemoryRange[];
  /** The `crashkernel=` reservation, if one was made. */
  crashkernel: ReservedRange | null;
  /** A crash kernel's dump: the crashed kernel's memory, from the ELF core header (null otherwise). */
  vmcore: readonly VmcoreSegment[] | null;
  /** Command line parameters nobody declared, verbatim. */
  unknownParams: readonly string[];
}

export class Kernel {
  private _state: KernelState = 'booting';
  private _shutdownReport: ShutdownReport | null = null;

  constructor(
    readonly port: CpuPort,
    readonly dt: DeviceTree,
    readonly params: KernelParams,
    readonly cmdline: string,
    readonly core: DriverCore,
    /** The page allocator: this kernel's view of who owns each frame of RAM. */
    readonly alloc: PageAllocator,
    /** The iommu core of this kernel. */
    readonly iommu: IommuSubsystem,
    readonly mmContext: MmContext,
    readonly processes: ProcessTable,
    private readonly mem: KernelMemoryInfo = { memory: [], crashkernel: null, vmcore: null, unknownParams: [] },
  ) {}

  private _crashImage: CrashImage | null = null;

  get memory(): readonly MemoryRange[] {
    return this.mem.memory;
  }

  /** The `crashkernel=` reservation (kernel: crashk_res), or null. */
  get crashkernel(): ReservedRange | null {
    return this.mem.crashkernel;
  }

  /** The dump this crash kernel was handed (kernel: /proc/vmcore's segments), or null. */
  get vmcore(): readonly VmcoreSegment[] | null {
    return this.mem.vmcore;
  }

  /** kernel: is_kdump_kernel(): booted by a crash kexec with an ELF core header to read. */
  get isKdump(): boolean {
    return this.mem.vmcore !== null;
  }

  get unknownParams(): readonly string[] {
    return this.mem.unknownParams;
  }

  /** The crash image loaded for a panic (kexecLoadCrash), or null. */
  get crashImage(): CrashImage | null {
    return this._crashImage;
  }

  /** @internal kexecLoadCrash */
  _setCrashImage(image: CrashImage): void {
    this._crashImage = image;
  }

  /** @internal panic() without a crash kernel: the kernel is stopped, its devices are not. */
  _panicked(): void {
    this._state = 'panicked';
  }

  private _deferredAtBoot: readonly DeferredProbe[] = [];

  /** Devices still waiting on deferred probe when boot finished. */
  get deferredAtBoot(): readonly DeferredProbe[] {
    return this._deferredAtBoot;
  }

  /** @internal bootKernel: the end of boot. */
  _bootComplete(deferred: readonly DeferredProbe[]): void {
    this._deferredAtBoot = deferred;
    this._state = 'running';
  }

  get instance(): number {
    return this.core.instance;
  }

  get state(): KernelState {
    return this._state;
  }

  get log(): DriverCore['log'] {
    return this.core.log;
  }

  get shutdownReport(): ShutdownReport | null {
    return this._shutdownReport;
  }

  /**
   * kernel: kernel_restart_prepare() → device_shutdown(): every bound driver's `.shutdown`, in
   * reverse probe order (masters before their SMMU); drivers without one are skipped, their hardware
   * keeps running.
   */
  async shutdown(): Promise<ShutdownReport> {
    if (this._state !== 'running') {
      throw new KernelError('ESRCH', `kernel ${this.instance} is ${this._state}, not running`);
    }
    // Page requests still waiting are answered (INVALID) while the SMMUs run, before any .shutdown:
    // no master's shutdown waits on a stalled transaction, none is left stalled.
    const answered = iommuFaultShutdown(this.iommu);
    if (answered > 0) this.log.info('kernel', `shutdown: answered ${answered} pending page request group(s) INVALID`, LOG_NS);
    this._shutdownReport = await this.core.shutdown();
    this._state = 'shut-down';
    this.log.info('kernel', `shutdown: ${this._shutdownReport.called.length} .shutdown calls, ${this._shutdownReport.skipped.length} drivers without one`, LOG_NS);
    return this._shutdownReport;
  }

  /** Drop this kernel: detach everything it left attached to the machine (IRQ handlers). */
  discard(): void {
    this.core.teardown();
    this._state = 'gone';
  }
}

const running = new WeakMap<CpuPort, Kernel>();

/** The kernel booting or running on the machine behind `port` (until it is discarded), if any. */
export function runningKernel(port: CpuPort): Kernel | null {
  const k = running.get(port);
  return k && k.state !== 'gone' ? k : null;
}

/**
 * Read the firmware the boot loader handed over: the DTB, or else the ACPI tables and the UEFI
 * memory map, which become the kernel's device description (bus/acpi/acpi-boot.ts).
 */
export function readBootDeviceTree(port: CpuPort): DeviceTree {
  const blob = port.firmware.dtb;
  if (blob) return parseFdt(blob);
  const acpi = port.firmware.acpi;
  if (acpi.size > 0) {
    const mm = port.firmware.memoryMap;
    if (!mm || mm.ram.length === 0) throw new FirmwareError('uefi', 'ACPI boot without a memory map describing RAM', null, null);
    return acpiBuildDeviceTree(parseAcpiTables(acpi), mm).tree;
  }
  throw new FirmwareError('dtb', 'the boot loader passed no device tree and no ACPI tables', null, null);
}

// kernel: start_kernel()
export async function bootKernel(machine: BootTarget, opts: BootOptions = {}): Promise<Kernel> {
  const port = machine.cpu;
  const previous = runningKernel(port);
  if (previous) {
    throw new KernelError('EBUSY', `kernel ${previous.instance} is still running on this machine: shut it down (kexec) first`);
  }
  const dt = opts.dtb ? parseFdt(opts.dtb) : readBootDeviceTree(port);
  const cmdline = opts.cmdline ?? dt.byPath('/chosen')?.string('bootargs') ?? '';
  const parsed = parseCmdline(cmdline);
  if (opts.strictParams && parsed.unknown.length > 0) {
    const hints = misspeltParamHints(parsed.unknown);
    throw new CmdlineError(`unknown parameter(s) ${parsed.unknown.map((u) => `"${u}"`).join(', ')}${hints.length ? ` (${hints.join('; ')})` : ''}`);
  }
  const instance = opts.instance ?? 0;
  const fwmem = scanFirmwareMemory(dt);
  let crashkernel: ReservedRange | null = null;
  const crashErrors: string[] = [];
  if (parsed.params.crashkernel && !fwmem.usable) {
    const r = reserveCrashkernel(parsed.params.crashkernel, fwmem.memory, fwmem.reserved);
    if ('error' in r) crashErrors.push(r.error);
    else {
      crashkernel = r;
      fwmem.reserved.push(r);
    }
  }
  let vmcore: VmcoreSegment[] | null = null;
  const vmcoreErrors: string[] = [];
  if (fwmem.elfcorehdr) {
    try {
      vmcore = parseElfCoreHeader(port.ram, fwmem.elfcorehdr.base, fwmem.elfcorehdr.size);
    } catch (e) {
      vmcoreErrors.push((e as Error).message);
    }
  }
  const alloc = new PageAllocator({ memory: fwmem.memory, reserved: fwmem.reserved, kernelInstance: instance, ram: port.ram });
  const mmContext = new MmContext({ alloc, ram: port.ram });
  const processes = new ProcessTable(mmContext);
  const core = new DriverCore({ port, dt, instance });
  core.log.info('kernel', `booting kernel ${core.instance}; command line: "${cmdline}"`, LOG_NS);
  for (const g of fwmem.ignored) {
    core.log.warn('kernel', `${g.node}: ignoring memory range 0x${g.base.toString(16)} - 0x${g.end.toString(16)}: beyond the physical address limit`, LOG_NS);
  }
  for (const w of acpiFirmwareOf(dt)?.warnings ?? []) core.log.warn('kernel', `ACPI: ${w}`, LOG_NS);
  for (const u of fwmem.unplaced) {
    core.log.err('kernel', `reserved-memory: failed to allocate ${u.size} bytes for node ${u.node}`, LOG_NS);
  }
  // kernel: print_unknown_bootoptions(), one line for all of them; then a hint per likely typo.
  const unknownLine = unknownParamsLine(parsed.unknown);
  if (unknownLine) core.log.warn('kernel', unknownLine, LOG_NS);
  for (const h of misspeltParamHints(parsed.unknown)) core.log.warn('kernel', h, LOG_NS);
  for (const e of crashErrors) core.log.warn('kernel', `crashkernel reservation failed: ${e}`, LOG_NS);
  if (crashkernel) {
    core.log.info('kernel', `crashkernel reserved: 0x${crashkernel.base.toString(16)} - 0x${(crashkernel.base + crashkernel.size - 1).toString(16)} (${Math.floor(crashkernel.size / 2 ** 20)} MB)`, LOG_NS);
  }
  for (const e of vmcoreErrors) core.log.err('kernel', `Kdump: vmcore not initialized: ${e}`, LOG_NS);
  if (vmcore) core.log.info('kernel', `kdump kernel: ${vmcore.length} vmcore segment(s), ${Math.floor(vmcore.reduce((a, v) => a + v.size, 0) / 2 ** 20)} MiB of the crashed kernel's memory`, LOG_NS);
  // kernel: iommu_subsys_init(); the driver core's DMA hooks are how it reaches every device.
  const iommu = new IommuSubsystem({
    core,
    pageAllocator: alloc,
    passthrough: parsed.params['iommu.passthrough'],
    strict: parsed.params['iommu.strict'],
  });
  core.setDmaConfigureHooks({
    configure: (dev, driverManagedDma) => iommuDmaConfigure(dev, { driverManagedDma }),
    cleanup: (dev, driverManagedDma) => iommuDmaCleanup(dev, { driverManagedDma }),
  });
  core.addBusNotifier((dev, action) => iommuBusNotify(dev, action));
  const kernel = new Kernel(port, dt, parsed.params, cmdline, core, alloc, iommu, mmContext, processes, {
    memory: fwmem.memory,
    crashkernel,
    vmcore,
    unknownParams: parsed.unknown,
  });
  running.set(port, kernel);
  try {
    for (const drv of builtinDrivers(opts.drivers ?? 'all', kernel, opts)) await core.registerDriver(drv);
    for (const drv of opts.extraDrivers ?? []) await core.registerDriver(drv);
    const populated = await ofPlatformPopulate(core);
    for (const e of populated.errors) core.log.warn('kernel', `firmware: ${e.message}`, LOG_NS);
    kernel._bootComplete(await core.settle());
  } catch (e) {
    // A kernel that panics during boot leaves nothing attached to the machine.
    kernel.discard();
    throw e;
  }
  const deferred = kernel.deferredAtBoot;
  core.log.info('kernel', `boot complete: ${core.probeOrder.length} devices bound, ${deferred.length} still deferred`, LOG_NS);
  return kernel;
}
