import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { V8_FLAGS } from '../../cli/v8-tuning.js';

/** Exit status of this node started with `flags` (node refuses an unknown V8 flag on its command line). */
function nodeWith(flags: readonly string[]): number | null {
  return spawnSync(process.execPath, [...flags, '-e', '0'], { stdio: 'ignore' }).status;
}

describe('the V8 settings of the CLI and the bench', () => {
  it('are flags this node knows (a renamed flag would be ignored silently by setFlagsFromString)', () => {
    expect(V8_FLAGS.length).toBeGreaterThan(0);
    for (const flag of V8_FLAGS) expect(nodeWith([flag]), flag).toBe(0);
  });

  it('a flag node does not know is refused, so the check above can fail', () => {
    expect(nodeWith(['--max-inlined-bytecode-size-cumulativ=2000'])).not.toBe(0);
  });
});
