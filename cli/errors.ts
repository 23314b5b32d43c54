/**
 * The CLI's exit contract: malformed firmware is exit 2 with one stderr line starting
 * `iommu-sim: firmware error:`; a failed scenario is exit 1; anything else is a bug (exit 70).
 */
import { FirmwareError } from '../bus/firmware-error.js';
import { MachineFirmwareError } from '../hw/firmware.js';
import { CmdlineError } from '../kernel/cmdline.js';
import { FirmwareContentError, FirmwareFileError } from '../scenarios/lib/firmware-file.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_FIRMWARE = 2;
export const EXIT_USAGE = 64;
export const EXIT_BUG = 70;

export class UsageError extends Error {
  override name = 'UsageError';
}

export function isFirmwareError(e: unknown): e is FirmwareError | MachineFirmwareError {
  return e instanceof FirmwareError || e instanceof MachineFirmwareError;
}

/** Map an error to the exit status and the stderr text the contract asks for. */
export function reportError(e: unknown): { status: number; message: string } {
  if (e instanceof FirmwareContentError || isFirmwareError(e)) {
    return { status: EXIT_FIRMWARE, message: `iommu-sim: firmware error: ${oneLine(e.message)}` };
  }
  if (e instanceof UsageError || e instanceof CmdlineError || e instanceof FirmwareFileError) return { status: EXIT_USAGE, message: `iommu-sim: ${oneLine(e.message)}` };
  const text = e instanceof Error ? (e.stack ?? e.message) : String(e);
  return { status: EXIT_BUG, message: `iommu-sim: internal error (a bug): ${text}` };
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}
