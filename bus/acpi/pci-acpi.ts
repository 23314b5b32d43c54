/**
 * The PCI firmware `_DSM` of an ACPI host bridge, as the kernel runs it: function 5, "preserve
 * boot configuration". Returning the integer 0 means the OS must keep the resource assignment
 * firmware made, and with it the requester IDs firmware used: only then does Linux honour IORT RMR
 * nodes for PCI devices (ARM DEN 0049E.d 3.1.1.5), since re-enumeration could change the RIDs an
 * RMR names. A _DSM this kernel cannot run (aml-eval.ts's subset) counts as absent, as a failed
 * evaluation does in Linux, with a warning saying why.
 */
import { acpiFirmwareOfNode } from './acpi-boot.js';
import { amlEvaluate } from './aml-eval.js';
import { acpiPathEqual, amlUuidBytes, DSM_PCI_PRESERVE_BOOT_CONFIG, PCI_ACPI_DSM_GUID } from './aml.js';
import type { DtNode } from '../of/tree.js';

/** The _DSM revision Linux passes for this function. */
const PCI_ACPI_DSM_REV = 1n;

/**
 * Whether the ACPI host bridge behind `host` asks the OS to preserve its boot configuration; null
 * for a host bridge that was not described by ACPI.
 */
// kernel: pci_acpi_preserve_config() [pci-acpi.c]
export function pciAcpiPreserveConfig(host: DtNode, warn: (msg: string) => void): boolean | null {
  const fw = acpiFirmwareOfNode(host);
  if (!fw) return null;
  const dev = fw.tables.namespace.devices.find((d) => acpiPathEqual(d.path, host.path));
  const dsm = dev?.methods.get('_DSM');
  if (!dsm) return false;
  const r = amlEvaluate(dsm, [amlUuidBytes(PCI_ACPI_DSM_GUID), PCI_ACPI_DSM_REV, BigInt(DSM_PCI_PRESERVE_BOOT_CONFIG), []]);
  if (r.kind === 'unsupported') {
    warn(`_DSM not evaluated (${r.reason}): boot configuration not preserved`);
    return false;
  }
  // acpi_evaluate_dsm_typed(…, ACPI_TYPE_INTEGER): any other type is no answer.
  return r.kind === 'value' && r.value === 0n;
}
