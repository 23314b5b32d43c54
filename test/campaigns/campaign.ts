/**
 * The adversarial campaigns' common harness: a campaign is a function of (seed, case index) that
 * throws CampaignFailure (or anything else) when the system under test misbehaves. `make test` runs
 * a fixed-seed slice of each; `make soak` the long run, sized by environment variables. On failure
 * the seed and case are printed and the failing input is saved under `.cache/campaigns/`, so
 * `CAMPAIGN_SEED=<seed>` replays it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class CampaignFailure extends Error {
  constructor(
    message: string,
    /** What to save to replay the case (JSON-serialisable). */
    readonly input: unknown,
  ) {
    super(message);
    this.name = 'CampaignFailure';
  }
}

/** An integer from the environment, or `fallback`. */
export function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}=${v} is not a non-negative integer`);
  return n;
}

/** The seed of a long run: CAMPAIGN_SEED, else SOAK_SEED, else `fallback`. */
export function campaignSeed(fallback: number): number {
  return envInt('CAMPAIGN_SEED', envInt('SOAK_SEED', fallback));
}

const root = join(__dirname, '..', '..');

/** Save a failing case's input; returns the file. */
export function saveFailure(campaign: string, seed: number, index: number, input: unknown, error: unknown): string {
  const dir = join(root, '.cache', 'campaigns');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${campaign}-seed${seed}-case${index}.json`);
  const msg = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  writeFileSync(file, `${JSON.stringify({ campaign, seed, index, error: msg, input }, null, 2)}\n`);
  return file;
}

/**
 * Run `cases` cases of a campaign from `seed`: case i gets seed + i. The first failure stops the run
 * with an error that names the seed, the case and the file its input was saved to.
 */
export async function runCampaign<R>(
  campaign: string,
  seed: number,
  cases: number,
  run: (caseSeed: number, index: number) => Promise<R>,
  onResult?: (r: R) => void,
): Promise<void> {
  for (let i = 0; i < cases; i++) {
    const caseSeed = (seed + i) >>> 0;
    let r: R;
    try {
      r = await run(caseSeed, i);
    } catch (e) {
      const input = e instanceof CampaignFailure ? e.input : { caseSeed };
      const file = saveFailure(campaign, seed, i, input, e);
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(`campaign ${campaign}: case ${i} (seed ${seed}, case seed ${caseSeed}) failed: ${msg}\n  input saved to ${file}\n  replay: CAMPAIGN_SEED=${caseSeed}`, { cause: e });
    }
    onResult?.(r);
    // Let the host's event loop run between cases (the simulation never yields to it by itself): the
    // test runner's own messages would otherwise time out during a long soak.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
