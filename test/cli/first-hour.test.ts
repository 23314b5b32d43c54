/**
 * What a new user meets first: --version, --help (exit codes, DEBUG namespaces, examples, the
 * scenarios), firmware errors that name the file, DT source given to --dtb, dump-dtb refusing a
 * terminal, tables that fit the terminal, a stale build rebuilt before it runs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatTable } from '../../cli/table.js';
import { writeFdt } from '../../bus/of/fdt.js';
import { buildVirtDeviceTree } from '../../scenarios/machines/virt.js';
import { scenarios } from '../../scenarios/index.js';
import { runCli } from './run-cli.js';

const root = join(import.meta.dirname, '..', '..');
const tmp = mkdtempSync(join(tmpdir(), 'iommu-sim-first-hour-'));
const hasDtc = spawnSync('dtc', ['--version']).status === 0;

describe('first hour', () => {
  it('--version prints the package version', async () => {
    const r = await runCli(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version);
  });

  it('--help lists exit codes, DEBUG namespaces, examples and every scenario', async () => {
    const r = await runCli(['--help']);
    expect(r.status).toBe(0);
    for (const s of ['Exit status:', '  64  usage error', '  70  a bug', 'DEBUG=', 'iommu:hw:smmu-v3:cmdq', 'iommu:drivers:arm-smmu-v3', 'Examples:', '--seeds 1..200 --jobs 2']) {
      expect(r.stdout).toContain(s);
    }
    const words = new Set(r.stdout.split(/\s+/));
    for (const s of scenarios) expect(words.has(s.name), s.name).toBe(true);
  });

  it('a malformed blob: the firmware error names the file', async () => {
    const bad = join(tmp, 'broken.dtb');
    const blob = writeFdt(buildVirtDeviceTree());
    blob[0] = 0;
    writeFileSync(bad, blob);
    const r = await runCli(['boot', '--dtb', bad]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(`iommu-sim: firmware error: ${bad}: dtb: bad magic 0xdfeed, expected 0xd00dfeed (offset 0x0)`);
  });

  it('DT source given to --dtb is compiled with dtc, or the error says how', async () => {
    const dts = join(tmp, 'tiny.dts');
    writeFileSync(dts, '/dts-v1/;\n/ {\n  #address-cells = <2>;\n  #size-cells = <2>;\n  memory@40000000 { device_type = "memory"; reg = <0 0x40000000 0 0x10000000>; };\n};\n');
    const r = await runCli(['boot', '--dtb', dts, '--json']);
    if (hasDtc) {
      expect(r.status).toBe(0);
      expect(JSON.parse(r.stdout).iommus).toEqual([]);
    } else {
      expect(r.status).toBe(64);
      expect(r.stderr).toContain(`${dts}: is Device Tree source; compiling it needs dtc, which is not installed (apt-get install device-tree-compiler`);
    }
  });

  it('an unreadable --dtb is a usage error naming the file', async () => {
    const r = await runCli(['boot', '--dtb', join(tmp, 'nope.dtb')]);
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/nope\.dtb: cannot read/);
  });

  it('dump-dtb refuses to write binary to a terminal', async () => {
    const was = process.stdout.isTTY;
    Object.defineProperty(process.stdout, 'isTTY', { value: true, configurable: true });
    try {
      const r = await runCli(['dump-dtb']);
      expect(r.status).toBe(64);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/binary blob: redirect it/);
    } finally {
      Object.defineProperty(process.stdout, 'isTTY', { value: was, configurable: true });
    }
  });

  it('tables fit the width by wrapping, never cutting', () => {
    const long = 'a long description of what the scenario shows that will not fit in a narrow terminal at all';
    const t = formatTable(['scenario', 'shows'], [['boot-virt', long]], { width: 50 });
    const lines = t.split('\n');
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(50);
    expect(lines.slice(2).map((l) => l.slice(11).trim()).join(' ')).toBe(long);
  });

  it('the launcher rebuilds a stale build before running', () => {
    execFileSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root });
    const stamp = join(root, 'dist', '.build-stamp');
    const src = join(root, 'cli', 'table.ts');
    const past = new Date(statSync(src).mtimeMs - 60_000);
    utimesSync(stamp, past, past);
    const r = spawnSync(process.execPath, [join(root, 'bin', 'iommu-sim'), '--version'], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(statSync(stamp).mtimeMs).toBeGreaterThan(statSync(src).mtimeMs);
  });
});

describe('the README', () => {
  it("boot --json example is the real output of the virt machine", async () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const at = readme.indexOf('### `boot --json`');
    const m = /```json\n([\s\S]*?)```/.exec(readme.slice(at));
    const r = await runCli(['boot', '--json']);
    expect(JSON.parse(m![1])).toEqual(JSON.parse(r.stdout));
  });
});
