/**
 * smmu-v3-2lvl-strtab: a two-level stream table over a sparse 16-bit StreamID space. Masters sit at
 * StreamIDs 0x0010, 0x4321 and 0xfe00: the driver allocates one level-2 table (256 STEs) for each of
 * their L1 entries and nothing else, the L1 descriptors say Span = 9, every other L1 descriptor stays
 * invalid, unused STEs of an allocated table abort, and DMA through each master works.
 */
import { armSmmuV3MasterOf } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { FIELD_GET } from '../bus/bitfield.js';
import {
  ARM_SMMU_STRTAB_BASE_CFG,
  STRTAB_BASE_CFG_FMT,
  STRTAB_BASE_CFG_LOG2SIZE,
  STRTAB_BASE_CFG_SPLIT,
  STRTAB_L1_DESC_L2PTR_MASK,
  STRTAB_L1_DESC_SPAN,
} from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuSteConfigName } from '../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { Checks, type Scenario } from './scenario.js';
import { allocPages, bootSmmuV3, deviceOf, engineJob, fillPhys, mapRange, ownDomain, readPhys, SMALL_SMMU_PATH, smallSmmuV3Tree } from './smmu-v3-lab.js';

const SIDS = [0x0010, 0x4321, 0xfe00];

export const scenario: Scenario = {
  name: 'smmu-v3-2lvl-strtab',
  shows: 'a 2-level stream table over sparse StreamIDs allocates only the level-2 tables in use',
  async run(ctx) {
    const engines = SIDS.map((sid) => ({ sid }));
    const lab = await bootSmmuV3({ seed: ctx.seed, tree: smallSmmuV3Tree({ engines }), smmuPath: SMALL_SMMU_PATH, smmu: { sidBits: 16 } });
    const c = new Checks();
    const st = lab.smmu.strtab;
    const cfg = lab.model.peek32(ARM_SMMU_STRTAB_BASE_CFG);
    c.equal('STRTAB_BASE_CFG: 2-level, SPLIT 8, 16 SID bits', { fmt: FIELD_GET(STRTAB_BASE_CFG_FMT, cfg), split: FIELD_GET(STRTAB_BASE_CFG_SPLIT, cfg), log2: FIELD_GET(STRTAB_BASE_CFG_LOG2SIZE, cfg) }, { fmt: 1, split: 8, log2: 16 });
    const allocated = st.l2.flatMap((t, i) => (t ? [i] : []));
    c.equal('level-2 tables exist only for the StreamIDs in use', allocated, [0x00, 0x43, 0xfe]);
    const ram = lab.machine.cpu.ram;
    const desc = (i: number): Uint32Array => new Uint32Array([ram.read32(st.table.pa + i * 8), ram.read32(st.table.pa + i * 8 + 4)]);
    c.ok(
      'their L1 descriptors: Span 9 and the table address',
      allocated.every((i) => STRTAB_L1_DESC_SPAN.get(desc(i)) === 9 && STRTAB_L1_DESC_L2PTR_MASK.get(desc(i)) === st.l2[i]!.pa),
    );
    const invalid = Array.from({ length: st.numL1Ents }, (_, i) => i).filter((i) => !allocated.includes(i));
    c.ok('every other L1 descriptor is invalid (Span 0)', invalid.every((i) => STRTAB_L1_DESC_SPAN.get(desc(i)) === 0));
    c.equal('STEs of the masters point at their CD tables', SIDS.map((sid) => armSmmuSteConfigName(st.readSte(sid))), ['s1', 's1', 's1']);
    c.equal('an unused StreamID in an allocated table aborts', armSmmuSteConfigName(st.readSte(0x4322)), 'abort');

    const landed: boolean[] = [];
    for (const [i, sid] of SIDS.entries()) {
      const path = `/dma@${(0x0c00_0000 + i * 0x1_0000).toString(16)}`;
      const domain = await ownDomain(lab, path);
      const src = allocPages(lab, 4096);
      const dst = allocPages(lab, 4096);
      fillPhys(lab, src, 4096, sid & 0xff);
      await mapRange(lab, domain, 0x1000_0000, src, 4096);
      await mapRange(lab, domain, 0x2000_0000, dst, 4096);
      const job = await engineJob(lab, path, { op: 'copy', src: 0x1000_0000, dst: 0x2000_0000, len: 4096 });
      landed.push(job.state === 'done' && readPhys(lab, dst, 4096).every((b) => b === (sid & 0xff)));
      c.equal(`StreamID 0x${sid.toString(16)} is the master's`, armSmmuV3MasterOf(deviceOf(lab, path))?.streams, [sid]);
    }
    c.equal('DMA through every sparse StreamID works', landed, [true, true, true]);

    return c.result({ 'L1 entries': st.numL1Ents, 'L2 tables': allocated.length, 'stream table bytes': st.buffers().reduce((n, b) => n + b.allocatedSize, 0) });
  },
};
