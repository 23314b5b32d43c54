/** The sweep's progress bar: what has finished and what failed, drawn within the width. */
import { describe, expect, it } from 'vitest';
import { Progress } from '../../cli/progress.js';

describe('progress bar', () => {
  it('counts finished and failed runs and fills in proportion', () => {
    const p = new Progress(4, false);
    expect(p.line(60)).toBe(`[${'.'.repeat(43)}] 0/4  0 failed`);
    p.tick(true);
    p.tick(false);
    const line = p.line(60);
    expect(line).toMatch(/^\[#{21,22}\.{21,22}\] 2\/4  1 failed$/);
    expect(line.length).toBeLessThanOrEqual(60);
  });
});
