/**
 * What a trapped access costs a guest, in virtual nanoseconds. Each is a named default a VM may
 * override (`VmOptions.trapCosts`).
 *
 * How they are charged: a trapped access returns at once (the port is synchronous), and the guest
 * CPU owes `vmExitNs` for it: its clock (`now()`) runs ahead by the debt and its next `delay()`
 * pays it, so a CMD_SYNC poll of CMDQ_CONS costs an exit per read, as on KVM. The VMM's own work is
 * asynchronous: the commands of a CMDQ_PROD write complete (CONS moves) after `vmmCommandNs` per
 * command and `ioctlNs` per call into the host kernel, plus whatever the host's SMMU work takes in
 * virtual time; an injected interrupt arrives after `irqInjectNs`. Passed-through MMIO is free.
 */
export interface TrapCosts {
  /**
   * A VM exit to the VMM in user space and the entry back: 3.7 µs, the "I/O User" round trip
   * KVM/ARM measured at 8,798 cycles on a 2.4 GHz X-Gene (Dall et al., "ARM Virtualization:
   * Performance and Architectural Implications", ISCA 2016, Table 3).
   */
  vmExitNs: number;
  /** The VMM decoding one guest command (an estimate: a few hundred instructions). */
  vmmCommandNs: number;
  /**
   * One ioctl into the host's iommufd (syscall entry and exit, object lookup, copy of the entries):
   * an estimate of 1 µs; the host SMMU work it starts is modelled separately, by the host.
   */
  ioctlNs: number;
  /** An interrupt injected into the guest (irqfd to the vGIC, and the guest's entry): an estimate of 1 µs. */
  irqInjectNs: number;
}

export const DEFAULT_TRAP_COSTS: Readonly<TrapCosts> = Object.freeze({
  vmExitNs: 3_700,
  vmmCommandNs: 300,
  ioctlNs: 1_000,
  irqInjectNs: 1_000,
});
