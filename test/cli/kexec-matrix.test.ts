/**
 * `iommu-sim kexec --matrix`: the table, the JSON report (inputs echoed, format version) and the
 * self-contained HTML report, opened in a real headless browser when one is installed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'iommu-sim-matrix-'));

/** Debian's chromium, if installed. */
function findChromium(): string | null {
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    for (const dir of (process.env.PATH ?? '').split(':')) {
      const p = join(dir, name);
      if (dir && existsSync(p)) return p;
    }
  }
  return null;
}
const chromium = findChromium();
if (!chromium) console.warn('kexec-matrix.test: no chromium on PATH (apt-get install chromium): the HTML report is not opened in a browser');

const small = ['kexec', '--matrix', '--kinds', 'v3', '--policies', 'disable,gbpa-abort', '--targets', 'aware,kdump', '--quiesce', 'none', '--seed', '3'];

describe('iommu-sim kexec --matrix', () => {
  it('--json prints the report with every input echoed and a format version, and writes both files', async () => {
    const out = join(tmp, 'json');
    const r = await runCli([...small, '--out', out, '--json']);
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.format).toBe(1);
    expect(report.tool).toBe('iommu-sim kexec --matrix');
    expect(report.inputs).toEqual({
      seed: 3,
      kinds: ['v3'],
      policies: { v3: ['disable', 'gbpa-abort'] },
      targets: ['aware', 'kdump'],
      quiesce: ['none'],
      cmdline: '',
      periodNs: 2_000,
      runBeforeNs: 100_000,
      runAfterNs: 200_000,
      crashkernel: '64M@0x60000000',
      machine: 'virt (RAM 0x40000000-0xffffffff)',
    });
    expect(report.cells.map((c: { policy: string; target: string }) => `${c.policy}/${c.target}`)).toEqual([
      'disable/aware', 'disable/kdump', 'gbpa-abort/aware', 'gbpa-abort/kdump',
    ]);
    expect(JSON.parse(readFileSync(join(out, 'kexec-matrix.json'), 'utf8'))).toEqual(report);
    expect(existsSync(join(out, 'kexec-matrix.html'))).toBe(true);
  });

  it('prints a table, one row per cell, and where it wrote the reports', async () => {
    const out = join(tmp, 'table');
    const r = await runCli([...small, '--out', out]);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^smmu\s+policy\s+target\s+quiesce\s+stray writes\s+stray bytes\s+blocked\s+faulted\s+failed\/s/);
    expect(lines.filter((l) => /^v3\s/.test(l))).toHaveLength(4);
    expect(lines.at(-1)).toBe(`4 cells; wrote ${join(out, 'kexec-matrix.json')} and ${join(out, 'kexec-matrix.html')}`);
  });

  it('rejects what it cannot run', async () => {
    expect((await runCli(['kexec', '--matrix', '--kinds', 'v4'])).status).toBe(64);
    expect((await runCli(['kexec', '--matrix', '--kinds', 'v3', '--policies', 'bypass'])).stderr).toMatch(/--policies: "bypass" is not a shutdown policy of v3/);
    expect((await runCli(['kexec', '--matrix', '--targets', 'sideways'])).status).toBe(64);
    expect((await runCli(['kexec', '--matrix', '--trace', join(tmp, 't.json')])).stderr).toMatch(/--trace is not supported with --matrix/);
    expect((await runCli(['kexec', '--kinds', 'v3'])).stderr).toMatch(/--kinds only applies to --matrix/);
  });

  it('the HTML report is self-contained: data and the charts inline as SVG, nothing fetched', async () => {
    const out = join(tmp, 'html');
    expect((await runCli([...small, '--out', out])).status).toBe(0);
    const html = readFileSync(join(out, 'kexec-matrix.html'), 'utf8');
    expect(html).not.toMatch(/<script[^>]+src=/i);
    expect(html).not.toMatch(/<link[^>]+href=/i);
    expect(html).toContain('<script id="report-data" type="application/json">');
    for (const id of ['chart-stray', 'chart-blocked', 'chart-storm', 'chart-boot', 'chart-kdump']) {
      expect(html).toMatch(new RegExp(`<figure class="chart" id="${id}"><svg [^>]*width="1400"`));
    }
    // The bars carry the data: the stray chart's title and every cell's label are in its SVG.
    const stray = /<figure class="chart" id="chart-stray">([\s\S]*?)<\/figure>/.exec(html)?.[1] ?? '';
    expect(stray).toContain('Stray bytes per cell');
    expect(stray).toContain('v3 gbpa-abort · kdump · quiesce=none');
  });

  it.skipIf(!chromium)('headless Chromium renders every chart without an error', async () => {
    const out = join(tmp, 'browser');
    expect((await runCli([...small, '--out', out])).status).toBe(0);
    const dom = execFileSync(
      chromium!,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--virtual-time-budget=5000', '--dump-dom', pathToFileURL(join(out, 'kexec-matrix.html')).href],
      { encoding: 'utf8', timeout: 90_000, stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const body = /<body[^>]*>/.exec(dom)?.[0] ?? '';
    expect(body).not.toContain('data-error');
    expect(body).toContain('data-charts="5"');
    expect(body).toContain('data-painted="5"');
  }, 120_000);
});
