/**
 * `iommu-sim run` as a user runs it: the real launcher in a child process (built first), scenario
 * modules from outside the catalogue, a scenario that throws, KTAP read by a TAP parser, and seed
 * sweeps whose results do not depend on worker threads or sharding.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Parser } from 'tap-parser';
import { beforeAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'iommu-sim');
const external = join(root, 'test', 'fixtures', 'scenarios', 'external.ts');

/** Run the CLI in a child process without blocking the test worker. */
function cli(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, DEBUG: '' }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ status: code, stdout, stderr });
    });
  });
}

interface Result {
  index: number;
  scenario: string;
  seed: number;
  verdict: string;
  figures: Record<string, unknown>;
  checks: unknown[];
  error: { name: string; message: string; stack: string } | null;
}

beforeAll(() => {
  execFileSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root });
});

describe('run --module', () => {
  it('runs scenarios from a TypeScript module anywhere; a throwing one is a FAIL with its source-mapped stack, and the run ends with the summary', async () => {
    const r = await cli(['run', '--module', external]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('== external-fault');
    expect(r.stdout).toContain('  [ok] one F_TRANSLATION');
    expect(r.stdout).toContain('[FAIL] the scenario ran to its end: threw RangeError: seed 1 is out of range for this experiment');
    // The stack points into the module as written (line 5 of the .ts file), not into transpiled code.
    expect(r.stdout).toMatch(/at explode \(.*external\.ts:5:\d+\)/);
    expect(r.stdout).toContain('1 passed, 1 failed (seed 1)');
    expect(r.stdout).toContain(`replay the first failure: iommu-sim run external-throws --seed 1 --module test/fixtures/scenarios/external.ts`);
    // Figures print whole, however long.
    expect(r.stdout).toContain('a figure with a long name that must print whole=and a long value that must not be cut off either');
  });

  it('--json: the document says what it is, echoes its inputs, and carries the error', async () => {
    const r = await cli(['run', 'external-throws', '--module', external, '--seed', '3', '--json']);
    expect(r.status).toBe(1);
    const doc = JSON.parse(r.stdout) as { format: string; version: number; inputs: { seeds: unknown; scenarios: unknown }; results: Result[] };
    expect(doc.format).toBe('iommu-sim-run');
    expect(doc.version).toBe(1);
    expect(doc.inputs.seeds).toEqual({ from: 3, to: 3 });
    expect(doc.inputs.scenarios).toEqual([{ name: 'external-throws', module: external }]);
    expect(doc.results[0].verdict).toBe('fail');
    expect(doc.results[0].error).toMatchObject({ name: 'RangeError', message: 'seed 3 is out of range for this experiment' });
    expect(doc.results[0].error!.stack).toMatch(/external\.ts:5:\d+/);
  });

  it('a module that exports no scenario is a usage error naming it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommu-sim-mod-'));
    const file = join(dir, 'empty.mjs');
    writeFileSync(file, 'export const nothing = 1;\n');
    const r = await cli(['run', '--module', file]);
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/empty\.mjs: exports no scenario/);
  });
});

describe('run --format ktap', () => {
  it('prints KTAP v1 that a TAP parser reads: nested suites, ok/not ok, diagnostics', async () => {
    const r = await cli(['run', '--module', external, '--format', 'ktap']);
    expect(r.status).toBe(1);
    expect(r.stdout.split('\n')[0]).toBe('KTAP version 1');
    expect(r.stdout).toContain('    # Subtest: external-fault');
    const parser = new Parser();
    const done = new Promise<{ ok: boolean; count: number; pass: number; fail: number; failures: { name: string }[] }>((resolve) => parser.on('complete', resolve));
    const children: { name: string; ok: boolean; count: number }[] = [];
    parser.on('child', (child: Parser) => child.on('complete', (res: { ok: boolean; count: number }) => children.push({ name: child.name, ...res })));
    parser.end(r.stdout);
    const res = await done;
    expect(res.ok).toBe(false);
    expect(res.count).toBe(2);
    expect(res.pass).toBe(1);
    expect(res.fail).toBe(1);
    expect(res.failures.map((f) => f.name)).toEqual(['external-throws']);
    expect(children.map((c) => [c.name, c.ok, c.count])).toEqual([
      ['external-fault', true, 2],
      ['external-throws', false, 1],
    ]);
  });
});

describe('seed sweeps', () => {
  const dir = mkdtempSync(join(tmpdir(), 'iommu-sim-sweep-'));
  const scenarios = ['boot-virt', 'smmu-v3-fault', 'smmu-v2-dma'];
  const results = (stdout: string): Result[] => (JSON.parse(stdout) as { results: Result[] }).results;

  it('--jobs and --shard + merge give exactly the serial results', async () => {
    const serial = await cli(['run', ...scenarios, '--seeds', '1..4', '--json']);
    expect(serial.status).toBe(0);
    const base = results(serial.stdout);
    expect(base.map((r) => [r.scenario, r.seed])).toEqual(scenarios.flatMap((s) => [1, 2, 3, 4].map((seed) => [s, seed])));

    const pooled = await cli(['run', ...scenarios, '--seeds', '1..4', '--jobs', '2', '--json']);
    expect(pooled.status).toBe(0);
    expect(results(pooled.stdout)).toEqual(base);

    const files: string[] = [];
    for (const i of [1, 2, 3]) {
      const s = await cli(['run', ...scenarios, '--seeds', '1..4', '--shard', `${i}/3`, '--json']);
      expect(s.status).toBe(0);
      const f = join(dir, `shard-${i}.json`);
      writeFileSync(f, s.stdout);
      files.push(f);
    }
    const shardSets = files.map((f) => results(execFileSync('cat', [f], { encoding: 'utf8' })).map((r) => r.index));
    expect(shardSets.flat().sort((a, b) => a - b)).toEqual(base.map((r) => r.index));
    const merged = await cli(['merge', ...files, '--json']);
    expect(merged.status).toBe(0);
    expect(results(merged.stdout)).toEqual(base);
    const text = await cli(['merge', ...files]);
    expect(text.stdout).toContain('12 passed, 0 failed (seeds 1..4)');
  });

  it('a failing sweep names the first failing (scenario, seed) and the command that replays it', async () => {
    const r = await cli(['run', '--module', external, '--seeds', '5..7', '--jobs', '2']);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('3 passed, 3 failed (seeds 5..7)');
    expect(r.stdout).toContain('first failure: external-throws, seed 5');
    expect(r.stdout).toContain('replay the first failure: iommu-sim run external-throws --seed 5 --module test/fixtures/scenarios/external.ts');
  });

  it('merge refuses documents of different runs', async () => {
    const a = join(dir, 'a.json');
    const b = join(dir, 'b.json');
    writeFileSync(a, (await cli(['run', 'boot-virt', '--shard', '1/2', '--seeds', '1..2', '--json'])).stdout);
    writeFileSync(b, (await cli(['run', 'boot-virt', '--shard', '2/2', '--seeds', '1..3', '--json'])).stdout);
    const r = await cli(['merge', a, b]);
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/b\.json: from another run/);
  });
});
