import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseFdt, writeFdt } from '../../bus/of/fdt.js';
import { buildVirtDeviceTree } from '../../scenarios/machines/virt.js';
import { runCli } from './run-cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'iommu-sim-cli-'));

describe('iommu-sim boot', () => {
  it('--json prints exactly the documented shape for the virt machine', async () => {
    const r = await runCli(['boot', '--json']);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    const report = JSON.parse(r.stdout);
    expect(Object.keys(report)).toEqual(['iommus', 'masters', 'pciHosts']);
    expect(report.iommus.map((i: { node: string }) => i.node)).toEqual(['/iommu@9050000', '/iommu@b000000']);
    for (const i of report.iommus) {
      expect(Object.keys(i)).toEqual(['node', 'compatible', 'status', 'driver', 'error']);
    }
    expect(report.iommus[0].compatible).toEqual(['arm,smmu-v3']);
    expect(report.masters[0]).toEqual({
      node: '/dma@c000000',
      iommus: [{ iommu: '/iommu@9050000', cells: [0x100] }],
      canStall: true,
      pasidBits: 8,
      group: report.masters[0].group,
      domain: report.masters[0].domain,
    });
    expect(report.masters[2].iommus).toEqual([{ iommu: '/iommu@b000000', cells: [0x400, 0] }]);
    expect(report.pciHosts).toEqual([
      { node: '/pcie@3f000000', iommuMap: [{ ridBase: 0, iommu: '/iommu@9050000', sidBase: 0, length: 65536 }] },
    ]);
  });

  it('prints a readable table by default', async () => {
    const r = await runCli(['boot']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^IOMMUs\nnode\s+compatible\s+status/);
    expect(r.stdout).toContain('/iommu@9050000');
    expect(r.stdout).toContain('Skipped nodes');
  });

  it('malformed firmware: exit 2 and one stderr line starting "iommu-sim: firmware error:"', async () => {
    const bad = join(tmp, 'bad.dtb');
    const blob = writeFdt(buildVirtDeviceTree());
    blob[0] = 0x00; // break the magic
    writeFileSync(bad, blob);
    const r = await runCli(['boot', '--dtb', bad]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.split('\n').filter((l) => l.length > 0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^iommu-sim: firmware error: .*magic.*offset 0x0/);
  });

  it('a bad kernel parameter is a usage error naming it', async () => {
    const r = await runCli(['boot', '--cmdline', 'arm-smmu-v3.shutdown_policy=sideways']);
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/^iommu-sim: EINVAL: kernel command line: bad value for arm-smmu-v3\.shutdown_policy: expected one of disable, gbpa-abort, ste-abort, got "sideways"\n$/);
  });

  it('--trace writes Chrome Trace Event JSON with one track per device', async () => {
    const file = join(tmp, 'trace.json');
    const r = await runCli(['boot', '--trace', file]);
    expect(r.status).toBe(0);
    const trace = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: { ph: string; name: string; args?: { name?: string } }[] };
    const tracks = trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args?.name);
    expect(tracks).toContain('/pcie@3f000000');
    expect(trace.traceEvents.some((e) => e.ph === 'i' && e.name.startsWith('probe bound'))).toBe(true);
  });
});

describe('iommu-sim dump-dtb', () => {
  it('writes the virt DTB, which reads back to the same tree', async () => {
    const file = join(tmp, 'virt.dtb');
    const r = await runCli(['dump-dtb', '--out', file]);
    expect(r.status).toBe(0);
    const blob = new Uint8Array(readFileSync(file));
    expect(writeFdt(parseFdt(blob))).toEqual(blob);
    expect(parseFdt(blob).byPath('/iommu@9050000')?.compatible).toEqual(['arm,smmu-v3']);
  });
});

describe('iommu-sim kexec', () => {
  it('--json reports stray writes with the documented fields, none when engines are quiesced', async () => {
    const bad = await runCli(['kexec', '--target', 'unaware', '--quiesce', 'none', '--json']);
    expect(bad.status).toBe(0);
    const out = JSON.parse(bad.stdout);
    expect(Object.keys(out)).toEqual(['strayWrites', 'blockedTransactions', 'faults']);
    expect(out.strayWrites.length).toBeGreaterThan(0);
    expect(Object.keys(out.strayWrites[0])).toEqual(['time', 'master', 'pa', 'len', 'owner', 'kernel']);
    expect(out.strayWrites[0].kernel).toBe(1);
    const good = await runCli(['kexec', '--quiesce', 'all', '--json']);
    expect(JSON.parse(good.stdout).strayWrites).toEqual([]);
  });

  it('rejects an unknown --target', async () => {
    const r = await runCli(['kexec', '--target', 'sideways']);
    expect(r.status).toBe(64);
  });
});

describe('iommu-sim run', () => {
  it('runs the catalogue and reports each scenario', async () => {
    const r = await runCli(['run', 'boot-virt', '--json', '--seed', '7']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.seed).toBe(7);
    expect(out.scenarios[0].name).toBe('boot-virt');
    expect(out.scenarios[0].verdict).toBe('pass');
  });

  it('an unknown scenario is a usage error', async () => {
    const r = await runCli(['run', 'no-such-thing']);
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/no scenario named "no-such-thing"/);
  });
});
