/**
 * Firmware given as a file: what it is, read by its content (not its name), and turned into the
 * blob a machine is built from. A flattened DT blob is used as it is; Device Tree source is
 * compiled with `dtc` when it is installed (otherwise the error says how to get it). Every error
 * names the file. New firmware kinds are recognised in `sniffFirmware()` and handled in
 * `firmwareBlob()`.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Machine } from '../../hw/machine.js';
import { machineFromDtb, type MachineBuildOptions } from './lab.js';

export type FirmwareKind = 'dtb' | 'dts' | 'unknown';

/** Why a firmware file cannot be used (unreadable, unknown kind, no compiler): a usage problem. */
export class FirmwareFileError extends Error {
  override name = 'FirmwareFileError';
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

/**
 * Malformed firmware inside a named file: the parser's or the machine's error (`cause`), with
 * the file it came from. The CLI reports it as a firmware error.
 */
export class FirmwareContentError extends Error {
  override name = 'FirmwareContentError';
  constructor(
    readonly file: string,
    override readonly cause: Error,
  ) {
    super(`${file}: ${cause.message}`);
  }
}

const FDT_MAGIC = [0xd0, 0x0d, 0xfe, 0xed];

/** What kind of firmware these bytes are. */
export function sniffFirmware(bytes: Uint8Array): FirmwareKind {
  if (bytes.length >= 4 && FDT_MAGIC.every((b, i) => bytes[i] === b)) return 'dtb';
  const head = Buffer.from(bytes.subarray(0, 4096)).toString('latin1');
  // DT source: the version tag, or a root node after comments and includes.
  if (/^\s*\/dts-v1\/\s*;/m.test(head) || /^\s*\/\s*\{/m.test(stripComments(head))) return 'dts';
  return 'unknown';
}

function stripComments(s: string): string {
  return s.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '').replace(/^\s*#include.*$/gm, '');
}

function readBytes(file: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(file));
  } catch (e) {
    throw new FirmwareFileError(file, `cannot read: ${(e as Error).message}`);
  }
}

/** Compile DT source with dtc; an error says how to install it when it is missing. */
function compileDts(file: string): Uint8Array {
  const r = spawnSync('dtc', ['-q', '-I', 'dts', '-O', 'dtb', file], { maxBuffer: 64 << 20 });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new FirmwareFileError(
      file,
      'is Device Tree source; compiling it needs dtc, which is not installed (apt-get install device-tree-compiler, ' +
        'or compile it yourself: dtc -I dts -O dtb -o FILE.dtb FILE.dts)',
    );
  }
  if (r.status !== 0) {
    const why = Buffer.from(r.stderr ?? []).toString().trim() || `dtc exited with ${String(r.status)}`;
    throw new FirmwareFileError(file, `dtc could not compile it: ${why}`);
  }
  return new Uint8Array(r.stdout);
}

/**
 * The flattened DT blob the file holds or compiles to. `check` looks at bytes that are neither a
 * DTB nor DT source first (the CLI's sends ACPI tables to --acpi); what it lets through goes to the
 * blob parser, which says what is wrong with it.
 */
export function firmwareBlob(file: string, check?: (file: string, bytes: Uint8Array) => void): Uint8Array {
  const bytes = readBytes(file);
  switch (sniffFirmware(bytes)) {
    case 'dtb':
      return bytes;
    case 'dts':
      return compileDts(file);
    case 'unknown':
      check?.(file, bytes);
      // The blob parser says what is wrong with it (bad magic, …), as malformed firmware.
      return bytes;
  }
}

function isFirmwareProblem(e: unknown): e is Error {
  const name = (e as { name?: string } | null)?.name;
  return e instanceof Error && (name === 'FirmwareError' || name === 'MachineFirmwareError' || name === 'UntranslatableAddressError');
}

/** Run `fn`; malformed firmware it reports is rethrown naming `file`. */
export async function namingFile<T>(file: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isFirmwareProblem(e)) throw new FirmwareContentError(file, e);
    throw e;
  }
}

/** Build a machine from a firmware file (a DTB, or DT source compiled with dtc). */
export function machineFromFile(file: string, opts: MachineBuildOptions = {}): Machine {
  const blob = firmwareBlob(file);
  try {
    return machineFromDtb(blob, opts);
  } catch (e) {
    if (isFirmwareProblem(e)) throw new FirmwareContentError(file, e);
    throw e;
  }
}
