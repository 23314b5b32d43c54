/**
 * The cost-curve bench (`bench --scale`): its output files and the memory it reports, on the cheapest
 * curve (StreamIDs in a 2-level stream table). Memory, not time, is asserted: an STE is 64 bytes and an
 * L2 table of 256 STEs is allocated whole, so dense StreamIDs cost 64 bytes each plus the share of the L1 frames they touch.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatScale, runScale, type ScaleCurve } from '../../bench/scale.js';

describe('bench --scale', () => {
  it('writes the curves as JSON and charts, with the memory per StreamID of a 2-level table', async () => {
    const out = mkdtempSync(join(tmpdir(), 'scale-'));
    const curves = await runScale({ large: false, only: 'sids', out, runs: 3, log: () => undefined });
    expect(curves.map((c) => c.name)).toEqual(['sids']);
    const json = JSON.parse(readFileSync(join(out, 'scale.json'), 'utf8')) as { machine: string; curves: ScaleCurve[] };
    expect(json.machine).toMatch(/cores, node v/);
    const sids = json.curves[0];
    expect(sids.points.map((p) => p.size)).toEqual([256, 4096, 65536]);
    // 256 SIDs: one L2 table (16 KiB) and the one 4 KiB frame of the (sparse) L1 table its descriptor
    // lands in; 65536: 256 L2 tables, whose 256 descriptors (2 KiB) still share one L1 frame.
    expect(sids.points[0].ramBytesPerUnit).toBe((16 * 1024 + 4096) / 256);
    expect(sids.points[2].ramBytesPerUnit).toBe(64 + 4096 / 65536);
    for (const p of sids.points) {
      // Three runs per point: the median with the fastest and slowest beside it.
      expect(p.nsPerOp).toBeGreaterThan(0);
      expect(p.nsPerOpMin).toBeLessThanOrEqual(p.nsPerOp);
      expect(p.nsPerOpMax).toBeGreaterThanOrEqual(p.nsPerOp);
    }
    const html = readFileSync(join(out, 'scale.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(html).toContain('sids: init SID (2-level)');
    expect(readFileSync(join(out, 'scale-sids.svg'), 'utf8')).toMatch(/^<svg /);
    expect(formatScale(curves)).toMatch(/sids +65536/);
  });
});
