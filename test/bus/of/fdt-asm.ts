/**
 * A tiny FDT assembler for tests: lay out header, reservation map, structure tokens and
 * strings by hand, so malformed blobs can be built on purpose and offsets known exactly.
 */
export const TOK = { BEGIN_NODE: 1, END_NODE: 2, PROP: 3, NOP: 4, END: 9 } as const;

export type Item =
  | { t: 'begin'; name: string }
  | { t: 'end-node' }
  | { t: 'prop'; nameoff: number; value: number[] | Uint8Array; len?: number }
  | { t: 'nop' }
  | { t: 'end' }
  | { t: 'raw'; words: number[] };

export const begin = (name: string): Item => ({ t: 'begin', name });
export const endNode = (): Item => ({ t: 'end-node' });
export const nop = (): Item => ({ t: 'nop' });
export const end = (): Item => ({ t: 'end' });
/** A property whose value is u32 cells (or bytes); `len` overrides the stored length field. */
export const prop = (nameoff: number, value: number[] | Uint8Array = [], len?: number): Item => ({ t: 'prop', nameoff, value, len });
export const raw = (...words: number[]): Item => ({ t: 'raw', words });

export interface AsmOptions {
  version?: number;
  lastComp?: number;
  bootCpu?: number;
  reservations?: [hi: number, lo: number, sizeHi: number, sizeLo: number][];
  /** Skip the reservation map's terminating entry. */
  noRsvTerminator?: boolean;
  /** Header fields to overwrite after layout: name → value. */
  patch?: Partial<Record<HeaderField, number>>;
}

export type HeaderField =
  | 'magic'
  | 'totalsize'
  | 'off_dt_struct'
  | 'off_dt_strings'
  | 'off_mem_rsvmap'
  | 'version'
  | 'last_comp_version'
  | 'boot_cpuid_phys'
  | 'size_dt_strings'
  | 'size_dt_struct';

export const HEADER_OFFSETS: Record<HeaderField, number> = {
  magic: 0,
  totalsize: 4,
  off_dt_struct: 8,
  off_dt_strings: 12,
  off_mem_rsvmap: 16,
  version: 20,
  last_comp_version: 24,
  boot_cpuid_phys: 28,
  size_dt_strings: 32,
  size_dt_struct: 36,
};

/** Byte offsets of the items of the structure block, relative to the blob start. */
export interface Assembled {
  blob: Uint8Array;
  itemOffsets: number[];
  structOff: number;
  stringsOff: number;
}

export function strings(...names: string[]): { bytes: Uint8Array; off: Record<string, number> } {
  const off: Record<string, number> = {};
  const bytes: number[] = [];
  for (const n of names) {
    off[n] = bytes.length;
    for (const ch of n) bytes.push(ch.charCodeAt(0));
    bytes.push(0);
  }
  return { bytes: Uint8Array.from(bytes), off };
}

export function assemble(items: Item[], stringsBlock: Uint8Array, opts: AsmOptions = {}): Assembled {
  const struct: number[] = []; // bytes
  const itemOffsets: number[] = [];
  const u32 = (v: number): void => {
    struct.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  };
  const pad = (): void => {
    while (struct.length % 4) struct.push(0);
  };
  for (const it of items) {
    itemOffsets.push(struct.length);
    switch (it.t) {
      case 'begin':
        u32(TOK.BEGIN_NODE);
        for (const ch of it.name) struct.push(ch.charCodeAt(0));
        struct.push(0);
        pad();
        break;
      case 'end-node':
        u32(TOK.END_NODE);
        break;
      case 'prop': {
        const bytes = it.value instanceof Uint8Array ? [...it.value] : it.value.flatMap((w) => [(w >>> 24) & 0xff, (w >>> 16) & 0xff, (w >>> 8) & 0xff, w & 0xff]);
        u32(TOK.PROP);
        u32(it.len ?? bytes.length);
        u32(it.nameoff);
        struct.push(...bytes);
        pad();
        break;
      }
      case 'nop':
        u32(TOK.NOP);
        break;
      case 'end':
        u32(TOK.END);
        break;
      case 'raw':
        for (const w of it.words) u32(w);
        break;
    }
  }
  const rsv = opts.reservations ?? [];
  const rsvOff = 40;
  const rsvBytes = (rsv.length + (opts.noRsvTerminator ? 0 : 1)) * 16;
  const structOff = rsvOff + rsvBytes;
  const stringsOff = structOff + struct.length;
  const total = stringsOff + stringsBlock.length;
  const blob = new Uint8Array(total);
  const dv = new DataView(blob.buffer);
  const header: Record<HeaderField, number> = {
    magic: 0xd00dfeed,
    totalsize: total,
    off_dt_struct: structOff,
    off_dt_strings: stringsOff,
    off_mem_rsvmap: rsvOff,
    version: opts.version ?? 17,
    last_comp_version: opts.lastComp ?? 16,
    boot_cpuid_phys: opts.bootCpu ?? 0,
    size_dt_strings: stringsBlock.length,
    size_dt_struct: struct.length,
    ...opts.patch,
  };
  for (const [k, v] of Object.entries(header)) dv.setUint32(HEADER_OFFSETS[k as HeaderField], v >>> 0);
  rsv.forEach(([a, b, c, d], i) => {
    dv.setUint32(rsvOff + i * 16, a);
    dv.setUint32(rsvOff + i * 16 + 4, b);
    dv.setUint32(rsvOff + i * 16 + 8, c);
    dv.setUint32(rsvOff + i * 16 + 12, d);
  });
  blob.set(struct, structOff);
  blob.set(stringsBlock, stringsOff);
  return { blob, itemOffsets: itemOffsets.map((o) => o + structOff), structOff, stringsOff };
}
