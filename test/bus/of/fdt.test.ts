import { describe, expect, it } from 'vitest';
import { FirmwareError } from '../../../bus/firmware-error.js';
import { FDT_MAX_DEPTH, parseFdt, writeFdt } from '../../../bus/of/fdt.js';
import { DeviceTree, DtNode } from '../../../bus/of/tree.js';
import { canonical, dtcDecompile, fixture, fwError, hasDtc } from './dt-test-utils.js';
import { type AsmOptions, assemble, begin, end, endNode, HEADER_OFFSETS, type Item, nop, prop, raw, strings } from './fdt-asm.js';

const S = strings('compatible', 'reg', '#address-cells', '#size-cells', 'ranges');
const okItems = (): Item[] => [
  begin(''),
  prop(S.off['#address-cells'], [1]),
  prop(S.off['#size-cells'], [1]),
  begin('soc'),
  prop(S.off['compatible'], new TextEncoder().encode('simple-bus\0')),
  prop(S.off['#address-cells'], [1]),
  prop(S.off['#size-cells'], [1]),
  prop(S.off['ranges'], []),
  begin('dev@10'),
  prop(S.off['reg'], [0x10, 0x20]),
  endNode(),
  endNode(),
  endNode(),
  end(),
];

/** Parse and return the FirmwareError it must raise. */
const firmwareError = (blob: Uint8Array): FirmwareError => fwError(() => parseFdt(blob));

function u32At(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(off);
}

describe('parseFdt on well-formed blobs', () => {
  it('reads nodes, properties, byte offsets, reservations and the boot CPU', () => {
    const a = assemble(okItems(), S.bytes, { bootCpu: 3, reservations: [[0, 0x8000_0000, 0, 0x1_0000], [1, 0, 0, 0x1000]] });
    const t = parseFdt(a.blob);
    expect(t.blob).toBe(a.blob);
    expect(t.bootCpuId).toBe(3);
    expect(t.reservations).toEqual([
      { address: 0x8000_0000, size: 0x1_0000 },
      { address: 0x1_0000_0000, size: 0x1000 },
    ]);
    const dev = t.byPath('/soc/dev@10')!;
    expect(dev.cells('reg')).toEqual([0x10, 0x20]);
    expect(t.byPath('/soc')!.compatible).toEqual(['simple-bus']);
    expect(t.root.u32('#address-cells')).toBe(1);
    // offsets point at the tokens themselves
    expect(t.root.offset).toBe(a.itemOffsets[0]);
    expect(t.byPath('/soc')!.offset).toBe(a.itemOffsets[3]);
    expect(dev.offset).toBe(a.itemOffsets[8]);
    expect(u32At(a.blob, dev.offset!)).toBe(1); // FDT_BEGIN_NODE
    expect(dev.propertyOffsets.get('reg')).toBe(a.itemOffsets[9]);
    expect(u32At(a.blob, dev.propertyOffsets.get('reg')!)).toBe(3); // FDT_PROP
  });

  it('skips NOP tokens anywhere in the structure block', () => {
    const items = okItems().flatMap((i) => [nop(), i]);
    const t = parseFdt(assemble(items, S.bytes).blob);
    expect(canonical(t)).toEqual(canonical(parseFdt(assemble(okItems(), S.bytes).blob)));
  });

  it('accepts version 16 (no size_dt_struct) and last_comp_version up to 17', () => {
    const v16 = assemble(okItems(), S.bytes, { version: 16, lastComp: 16, patch: { size_dt_struct: 0xdead } });
    expect(parseFdt(v16.blob).byPath('/soc/dev@10')!.cells('reg')).toEqual([0x10, 0x20]);
    const v17 = assemble(okItems(), S.bytes, { version: 17, lastComp: 17 });
    expect(parseFdt(v17.blob).root.children).toHaveLength(1);
    const v18 = assemble(okItems(), S.bytes, { version: 18, lastComp: 16 });
    expect(parseFdt(v18.blob).root.children).toHaveLength(1);
  });

  it('accepts duplicate sibling names and properties after subnodes', () => {
    const items: Item[] = [begin(''), begin('a'), endNode(), begin('a'), endNode(), prop(S.off['reg'], [7]), endNode(), end()];
    const t = parseFdt(assemble(items, S.bytes).blob);
    expect(t.root.children.map((c) => c.name)).toEqual(['a', 'a']);
    expect(t.root.cells('reg')).toEqual([7]);
  });

  it('ignores bytes after totalsize', () => {
    const a = assemble(okItems(), S.bytes);
    const longer = new Uint8Array(a.blob.length + 64);
    longer.set(a.blob);
    longer.fill(0xff, a.blob.length);
    expect(canonical(parseFdt(longer))).toEqual(canonical(parseFdt(a.blob)));
  });

  it('parses a 125 KB real blob in milliseconds', () => {
    const blob = fixture('sm8250-mtp.dtb');
    parseFdt(blob); // warm up
    const t0 = performance.now();
    const t = parseFdt(blob);
    const ms = performance.now() - t0;
    expect([...t.nodes()].length).toBe(1060);
    expect(ms).toBeLessThan(250);
  });
});

describe('parseFdt on malformed blobs', () => {
  const A = (items: Item[] = okItems(), opts: AsmOptions = {}) => assemble(items, S.bytes, opts);

  it('rejects blobs too short for magic or header, and bad magic', () => {
    expect(firmwareError(new Uint8Array(0)).reason).toMatch(/too short for the FDT magic/);
    expect(firmwareError(A().blob.slice(0, 3)).offset).toBe(0);
    const e = firmwareError(A().blob.slice(0, 30));
    expect(e.reason).toMatch(/truncated inside the 40-byte header/);
    const bad = A();
    bad.blob[0] = 0xde;
    const m = firmwareError(bad.blob);
    expect(m.reason).toMatch(/bad magic 0xde0dfeed/);
    expect(m.offset).toBe(0);
    expect(m.format).toBe('dtb');
  });

  it('rejects unsupported versions', () => {
    expect(firmwareError(A(undefined, { version: 15, lastComp: 15 }).blob).reason).toMatch(/version 15 is older than 16/);
    expect(firmwareError(A(undefined, { version: 18, lastComp: 18 }).blob).reason).toMatch(/last_comp_version 18/);
    expect(firmwareError(A(undefined, { version: 16, lastComp: 17 }).blob).reason).toMatch(/greater than version/);
  });

  it('rejects a truncated blob (totalsize beyond the data) at every cut', () => {
    const { blob } = A();
    for (let cut = 0; cut < blob.length; cut++) {
      const e = firmwareError(blob.slice(0, cut));
      expect(e.offset).not.toBeNull();
    }
    expect(firmwareError(blob.slice(0, blob.length - 1)).reason).toMatch(/totalsize \d+ exceeds the blob's/);
  });

  it.each<[string, Partial<Record<keyof typeof HEADER_OFFSETS, number>>, RegExp, keyof typeof HEADER_OFFSETS]>([
    ['totalsize below the header', { totalsize: 20 }, /totalsize 20 is smaller than the header/, 'totalsize'],
    ['struct offset in the header', { off_dt_struct: 8 }, /off_dt_struct 0x8 points into the header/, 'off_dt_struct'],
    ['strings offset in the header', { off_dt_strings: 0 }, /off_dt_strings 0x0 points into the header/, 'off_dt_strings'],
    ['rsvmap offset in the header', { off_mem_rsvmap: 4 }, /off_mem_rsvmap 0x4 points into the header/, 'off_mem_rsvmap'],
    ['struct offset past totalsize', { off_dt_struct: 0x10000 }, /off_dt_struct 0x10000 is beyond totalsize/, 'off_dt_struct'],
    ['strings offset past totalsize', { off_dt_strings: 0xffffffff }, /beyond totalsize/, 'off_dt_strings'],
    ['struct size past totalsize', { size_dt_struct: 0x10000 }, /structure block .* runs past totalsize/, 'size_dt_struct'],
    ['strings size past totalsize', { size_dt_strings: 0xfffffff0 }, /strings block .* runs past totalsize/, 'size_dt_strings'],
  ])('rejects %s, naming the header field', (_name, patch, reason, field) => {
    const e = firmwareError(A(undefined, { patch }).blob);
    expect(e.reason).toMatch(reason);
    expect(e.offset).toBe(HEADER_OFFSETS[field]);
  });

  it('rejects overlapping blocks', () => {
    const a = A();
    const overlap = A(undefined, { patch: { off_dt_strings: a.structOff + 4 } });
    expect(firmwareError(overlap.blob).reason).toMatch(/structure block and strings block overlap/);
    const withRsv = A(undefined, { reservations: [[0, 0x1000, 0, 0x1000]] });
    const structIntoRsv = A(undefined, {
      reservations: [[0, 0x1000, 0, 0x1000]],
      patch: { off_dt_struct: withRsv.structOff - 8, size_dt_struct: withRsv.stringsOff - withRsv.structOff + 8 },
    });
    const e = firmwareError(structIntoRsv.blob);
    expect(e.reason).toBe('memory reservation map overlaps the structure block');
    expect(e.offset).toBe(40);
    const noTerm = A(undefined, { noRsvTerminator: true, reservations: [[0, 0x1000, 0, 0x1000]] });
    expect(firmwareError(noTerm.blob).reason).toMatch(/reservation/);
  });

  it('rejects a reservation beyond 2^53', () => {
    const e = firmwareError(A(undefined, { reservations: [[0x0020_0000, 0, 0, 1]] }).blob);
    expect(e.reason).toMatch(/reservation address .* exceeds 2\^53/);
    expect(e.offset).toBe(40);
  });

  it('rejects damage in the structure block with the token offset and node path', () => {
    const unterminated = A([begin(''), raw(1, 0x61626364, 0x65666768)]);
    const u = firmwareError(unterminated.blob);
    expect(u.reason).toMatch(/node name runs past the end of the structure block/);
    expect(u.offset).toBe(unterminated.itemOffsets[1] + 4); // where the name starts
    const cases: [string, Item[], RegExp, number, string | null][] = [
      ['name offset outside strings', [begin(''), prop(0x400, [1]), endNode(), end()], /property name offset 0x400 is outside/, 1, '/'],
      ['value longer than the block', [begin(''), prop(0, [1], 0x1000), endNode(), end()], /value of 4096 bytes runs past/, 1, '/'],
      ['property header cut short', [begin(''), raw(3, 4)], /property header runs past/, 1, '/'],
      ['END_NODE with nothing open', [begin(''), endNode(), endNode(), end()], /FDT_END_NODE with no node open/, 2, null],
      ['property outside any node', [prop(0, [1]), begin(''), endNode(), end()], /FDT_PROP outside any node/, 0, null],
      ['missing FDT_END (reported at the block end)', [begin(''), endNode()], /ends without FDT_END/, -1, null],
      ['FDT_END inside a node', [begin(''), begin('soc'), end()], /FDT_END while node \/soc is still open/, 2, '/soc'],
      ['unknown token', [begin(''), raw(0x7), endNode(), end()], /unknown structure token 0x7/, 1, '/'],
      ['second root', [begin(''), endNode(), begin(''), endNode(), end()], /second top-level node/, 2, null],
      ['named root', [begin('x'), endNode(), end()], /root node has a name/, 0, '/'],
      ['empty child name', [begin(''), begin(''), endNode(), endNode(), end()], /node with an empty name/, 1, '/'],
      ["child name with '/'", [begin(''), begin('a/b'), endNode(), endNode(), end()], /contains '\/'/, 1, '/'],
      ['duplicate property', [begin(''), prop(0, [1]), prop(0, [2]), endNode(), end()], /"compatible" appears twice/, 2, '/'],
      ['no root at all', [nop(), end()], /has no root node/, 1, null],
    ];
    for (const [name, items, reason, itemIndex, where] of cases) {
      const a = A(items);
      const e = firmwareError(a.blob);
      expect(e.reason, name).toMatch(reason);
      expect(e.offset, name).toBe(itemIndex < 0 ? a.stringsOff : a.itemOffsets[itemIndex]);
      expect(e.where, name).toBe(where);
    }
  });

  it('rejects an unterminated property name in the strings block', () => {
    const unterminated = new TextEncoder().encode('compatible'); // no NUL
    const e = firmwareError(assemble([begin(''), prop(0, [1]), endNode(), end()], unterminated).blob);
    expect(e.reason).toMatch(/property name runs past the end of the strings block/);
  });

  it('rejects absurd nesting depth but accepts the limit', () => {
    const nest = (depth: number): Item[] => [
      begin(''),
      ...Array.from({ length: depth }, (_, i) => begin(`n${i}`)),
      ...Array.from({ length: depth + 1 }, () => endNode()),
      end(),
    ];
    expect(() => parseFdt(A(nest(FDT_MAX_DEPTH - 1)).blob)).not.toThrow();
    const e = firmwareError(A(nest(FDT_MAX_DEPTH + 5)).blob);
    expect(e.reason).toMatch(/nested deeper than 64/);
    expect(e.where).toMatch(/^\/n0\/n1\//);
  });

  it('error messages name the offset and the node', () => {
    const a = A([begin(''), begin('soc'), raw(0x7)]);
    const e = firmwareError(a.blob);
    expect(e.message).toBe(`dtb: unknown structure token 0x7 (offset 0x${a.itemOffsets[2].toString(16)}, node /soc)`);
  });
});

describe('writeFdt', () => {
  const tree = (): DeviceTree => {
    const t = parseFdt(assemble(okItems(), S.bytes, { bootCpu: 2, reservations: [[0, 0x4000_0000, 0, 0x20_0000]] }).blob);
    return t;
  };

  it('lays out a v17 blob as dtc does', () => {
    const out = writeFdt(tree());
    const h = (f: keyof typeof HEADER_OFFSETS) => u32At(out, HEADER_OFFSETS[f]);
    expect(h('magic')).toBe(0xd00dfeed);
    expect(h('version')).toBe(17);
    expect(h('last_comp_version')).toBe(16);
    expect(h('totalsize')).toBe(out.length);
    expect(h('off_mem_rsvmap')).toBe(40);
    expect(h('off_mem_rsvmap') % 8).toBe(0);
    expect(h('off_dt_struct')).toBe(40 + 2 * 16);
    expect(h('off_dt_strings')).toBe(h('off_dt_struct') + h('size_dt_struct'));
    expect(h('off_dt_strings') + h('size_dt_strings')).toBe(out.length);
    expect(h('size_dt_struct') % 4).toBe(0);
    expect(h('boot_cpuid_phys')).toBe(2);
    expect(u32At(out, 44)).toBe(0x4000_0000);
    expect(u32At(out, 52)).toBe(0x20_0000);
    expect(u32At(out, h('off_dt_struct') + h('size_dt_struct') - 4)).toBe(9); // FDT_END
  });

  it('stores each property name once in the strings block', () => {
    const root = new DtNode('', null);
    const t = new DeviceTree(root);
    for (let i = 0; i < 5; i++) {
      const c = new DtNode(`n@${i}`, root);
      c.properties.set('compatible', new TextEncoder().encode('x\0'));
      c.properties.set('reg', new Uint8Array(8));
      root.children.push(c);
    }
    const out = writeFdt(t);
    const stringsBlock = out.subarray(u32At(out, 12), u32At(out, 12) + u32At(out, 32));
    expect(new TextDecoder().decode(stringsBlock)).toBe('compatible\0reg\0');
  });

  it('round-trips: parse(write(t)) equals t', () => {
    const t = tree();
    expect(canonical(parseFdt(writeFdt(t)))).toEqual(canonical(t));
  });

  it('pads odd-length values and names to 4 bytes', () => {
    const root = new DtNode('', null);
    root.properties.set('a', Uint8Array.of(1, 2, 3));
    root.properties.set('b', new Uint8Array(0));
    const c = new DtNode('abcde', root);
    root.children.push(c);
    const t = new DeviceTree(root);
    const back = parseFdt(writeFdt(t));
    expect([...back.root.prop('a')!]).toEqual([1, 2, 3]);
    expect(back.root.prop('b')!.length).toBe(0);
    expect(back.root.children[0].name).toBe('abcde');
  });

  it('refuses trees a DTB cannot carry', () => {
    const bad = (mut: (t: DeviceTree) => void): FirmwareError => {
      const t = tree();
      mut(t);
      return fwError(() => writeFdt(t));
    };
    expect(bad((t) => t.byPath('/soc')!.properties.set('caf\u00e9\u2603', new Uint8Array(0))).reason).toMatch(/character/);
    expect(bad((t) => t.reservations.push({ address: -1, size: 1 })).reason).toMatch(/reservation address -1/);
    expect(bad((t) => (t.bootCpuId = 2 ** 32)).reason).toMatch(/boot CPU id/);
    const dup = bad((t) => {
      const soc = t.byPath('/soc')!;
      soc.children.push(new DtNode('dev@10', soc));
    });
    expect(dup.reason).toMatch(/two children named "dev@10"/);
    expect(dup.where).toBe('/soc');
  });

  it.skipIf(!hasDtc)('is read by dtc with no warnings (skipped when dtc is not on PATH)', () => {
    const r = dtcDecompile(writeFdt(tree()));
    expect(r.status).toBe(0);
    expect(r.warnings).toEqual([]);
    expect(r.dts).toContain('/memreserve/\t0x0000000040000000 0x0000000000200000;');
    expect(r.dts).toMatch(/dev@10 \{\s+reg = <0x10 0x20>;/);
  });
});
