/**
 * Bad firmware (a malformed DTB or IORT) is reported as a FirmwareError naming where: the byte
 * offset in the blob and, once known, the node path. Parsers throw nothing else.
 */
export class FirmwareError extends Error {
  constructor(
    /** What kind of firmware: "dtb", "iort", … */
    readonly format: string,
    readonly reason: string,
    /** Byte offset in the blob where the problem was found, or null if not tied to one. */
    readonly offset: number | null,
    /** DT node path (or IORT node description) the problem belongs to, or null. */
    readonly where: string | null,
  ) {
    const at = [
      offset !== null ? `offset 0x${offset.toString(16)}` : null,
      where !== null ? `node ${where}` : null,
    ].filter((x) => x !== null);
    super(`${format}: ${reason}${at.length ? ` (${at.join(', ')})` : ''}`);
    this.name = 'FirmwareError';
  }
}
