import { spawnSync } from 'node:child_process';
/** `boot --acpi`, `dump-acpi`, and what `--dtb` says about things that are not DTBs. */
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'iommu-sim-acpi-'));

describe('iommu-sim dump-acpi and boot --acpi', () => {
  it('dump-acpi writes the tables by signature; boot --acpi boots them with the documented JSON shape', async () => {
    const dir = join(tmp, 'virt');
    const d = await runCli(['dump-acpi', '--out', dir]);
    expect(d.status).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['APIC', 'DSDT', 'IORT', 'MCFG']);
    const r = await runCli(['boot', '--acpi', dir, '--json']);
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as { iommus: { node: string; status: string }[]; masters: { node: string; iommus: { iommu: string; cells: number[] }[] }[]; pciHosts: { node: string; iommuMap: unknown[] }[] };
    expect(Object.keys(report)).toEqual(['format', 'version', 'command', 'inputs', 'iommus', 'masters', 'pciHosts']);
    expect(report.iommus.map((i) => [i.node, i.status])).toEqual([
      ['IORT:smmuv3@0x30', 'probed'],
      ['IORT:smmu@0x74', 'probed'],
    ]);
    expect(report.masters.map((m) => [m.node, m.iommus[0].iommu, m.iommus[0].cells])).toEqual([
      ['\\_SB_.DMA0', 'IORT:smmuv3@0x30', [0x100]],
      ['\\_SB_.DMA1', 'IORT:smmuv3@0x30', [0x101]],
      ['\\_SB_.DMA2', 'IORT:smmu@0x74', [0x400]],
      ['\\_SB_.DMA3', 'IORT:smmu@0x74', [0x401]],
    ]);
    expect(report.pciHosts).toEqual([{ node: '\\_SB_.PCI0', iommuMap: [{ ridBase: 0, iommu: 'IORT:smmuv3@0x30', sidBase: 0, length: 0x1_0000 }] }]);
  });

  it('a damaged table is exit 2 with one firmware-error line naming table, offset and node', async () => {
    const dir = join(tmp, 'bad');
    await runCli(['dump-acpi', '--out', dir]);
    const iort = new Uint8Array(readFileSync(join(dir, 'IORT')));
    iort[100] ^= 0xff;
    writeFileSync(join(dir, 'IORT'), iort);
    const r = await runCli(['boot', '--acpi', dir]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(/^iommu-sim: firmware error: IORT: field "Checksum"/);
  });

  it('--memory sets the RAM; bad values and --memory without --acpi are usage errors', async () => {
    const dir = join(tmp, 'mem');
    await runCli(['dump-acpi', '--out', dir]);
    expect((await runCli(['boot', '--acpi', dir, '--memory', '0x40000000:0x20000000', '--json'])).status).toBe(0);
    const bad = await runCli(['boot', '--acpi', dir, '--memory', 'lots']);
    expect(bad.status).toBe(64);
    expect(bad.stderr).toMatch(/--memory: "lots" is not BASE:SIZE/);
    expect((await runCli(['boot', '--memory', '0x40000000:0x1000'])).status).toBe(64);
    expect((await runCli(['boot', '--acpi', join(tmp, 'nowhere')])).stderr).toMatch(/cannot read ACPI table folder/);
  });

  it('--dtb given an ACPI table, ASL source or DTS text says what it is and what to run', async () => {
    const dir = join(tmp, 'dtb');
    await runCli(['dump-acpi', '--out', dir]);
    const aml = await runCli(['boot', '--dtb', join(dir, 'DSDT')]);
    expect(aml.status).toBe(64);
    expect(aml.stderr).toMatch(/is an ACPI DSDT table, not a flattened device tree: .*iommu-sim boot --acpi DIR/);
    const asl = join(tmp, 'x.asl');
    writeFileSync(asl, 'DefinitionBlock ("x.aml", "DSDT", 2, "A", "B", 1) { }\n');
    expect((await runCli(['boot', '--dtb', asl])).stderr).toMatch(/is ACPI source text: compile it with `iasl/);
    const dts = join(tmp, 'x.dts');
    writeFileSync(dts, '/dts-v1/;\n/ { compatible = "x"; };\n');
    // DT source is compiled with dtc when it is installed (the compiled tree is then what boots or
    // is reported as malformed firmware of that file); without dtc the error says how to get it.
    const r = await runCli(['boot', '--dtb', dts]);
    if (spawnSync('dtc', ['--version']).status === 0) expect(r.stderr).not.toMatch(/cannot read|not a blob/);
    else expect(r.stderr).toMatch(/is Device Tree source; compiling it needs dtc, which is not installed/);
  });
});
