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
    expect(Object.keys(report)).toEqual(['format', 'version', 'command', 'inputs', 'iommus', 'masters', 'pciHosts']);
    expect(report).toMatchObject({ format: 'iommu-sim-boot', version: 1, command: 'boot', inputs: { seed: 1 } });
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
    expect(lines[0]).toMatch(/^iommu-sim: firmware error: .*bad\.dtb: dtb: .*magic.*offset 0x0/);
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

  it('--trace: every layer emits into it, on virtual time', async () => {
    const file = join(tmp, 'trace-layers.json');
    const r = await runCli(['boot', '--trace', file]);
    expect(r.status).toBe(0);
    const trace = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: { ph: string; cat: string; ts: number; tid: number; pid: number; args: Record<string, unknown> }[] };
    const events = trace.traceEvents.filter((e) => e.ph === 'i');
    const cats = new Set(events.map((e) => e.cat));
    // MMIO from the drivers, MSIs (the CMD_SYNC completions), probe/bind from the driver core,
    // scheduler steps, and the kernel log. A quiet boot raises no wired interrupt: CMD_SYNC
    // completion is signalled by its MSI alone.
    for (const c of ['mmio', 'msi', 'probe', 'sched', 'log']) expect(cats).toContain(c);
    const ts = events.map((e) => e.ts);
    expect(ts).toEqual([...ts].sort((a, b) => a - b));
    expect(ts[0]).toBe(0);
    // Boot takes microseconds of virtual time, not the wall-clock milliseconds it takes to simulate.
    expect(ts[ts.length - 1]).toBeGreaterThan(0);
    expect(ts[ts.length - 1]).toBeLessThan(1_000_000);
    expect(new Set(events.map((e) => e.pid))).toEqual(new Set([1]));
  });

  it('a boot that fails still writes its trace; the failure is what is reported', async () => {
    const file = join(tmp, 'trace-failed-boot.json');
    const r = await runCli(['boot', '--cmdline', 'iommu.strict=maybe', '--trace', file]);
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/^iommu-sim: .*iommu\.strict/);
    const trace = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: { ph: string; name: string; args: { name?: string } }[] };
    expect(trace.traceEvents.find((e) => e.name === 'process_name')?.args.name).toBe('boot virt');
  });

  it('an unwritable --trace file is a usage error naming it, not a bug', async () => {
    const r = await runCli(['boot', '--trace', join(tmp, 'no-such-dir', 'trace.json')]);
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/^iommu-sim: cannot write .*no-such-dir\/trace\.json: ENOENT/);
  });

  it('a blob that parses but names a phandle nothing carries: exit 2 naming the node', async () => {
    const bad = join(tmp, 'bad-iommus.dtb');
    // An `iommus` entry pointing at a phandle nothing carries: the blob parses, the machine rejects it.
    const tree = buildVirtDeviceTree();
    tree.byPath('/dma@c000000')!.properties.set('iommus', Uint8Array.of(0, 0, 0x7f, 0xff, 0, 0, 1, 0));
    writeFileSync(bad, writeFdt(tree));
    const r = await runCli(['boot', '--dtb', bad, '--trace', join(tmp, 'trace-bad.json')]);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n').filter((l) => l)).toEqual([expect.stringMatching(/^iommu-sim: firmware error: .*bad-iommus\.dtb: dtb: .*phandle 32767.*\(offset 0x[0-9a-f]+, node \/dma@c000000\)$/)]);
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
    expect(Object.keys(out)).toEqual([
      'format', 'inputs', 'policies', 'observable', 'nothingToObserve', 'strayWrites', 'blockedTransactions', 'faults',
      'accounting', 'storm', 'boot', 'kdump', 'unknownParams',
    ]);
    expect(out.format).toBe(2);
    expect(out.inputs).toEqual({
      machine: 'virt (RAM 0x40000000-0xffffffff)', seed: 1, target: 'unaware', quiesce: 'none', cmdline: '',
      targetCmdline: null, strictParams: false, storm: false,
    });
    expect(out.policies.summary).toBe(
      '.shutdown with arm-smmu-v3.shutdown_policy=disable, arm-smmu.shutdown_policy=bypass; then an IOMMU-unaware kernel (no SMMU driver touches them)',
    );
    expect(out.accounting.balanced).toBe(true);
    expect(out.strayWrites.length).toBeGreaterThan(0);
    expect(Object.keys(out.strayWrites[0])).toEqual(['time', 'master', 'pa', 'len', 'owner', 'kernel']);
    // From the hand-over on: into the outgoing kernel's memory once its SMMUs bypass during its own
    // shutdown (kernel 0), between kernels if the hand-over takes time (-1), then into the incoming
    // kernel's (kernel 1); the accounting agrees.
    const kernels = new Set(out.strayWrites.map((w: { kernel: number }) => w.kernel));
    expect(kernels.has(0) && kernels.has(1)).toBe(true);
    expect([...kernels].every((k) => k === 0 || k === 1 || k === -1)).toBe(true);
    expect(out.strayWrites.length).toBe(out.accounting.stray);
    const good = await runCli(['kexec', '--quiesce', 'all', '--json']);
    expect(JSON.parse(good.stdout).strayWrites).toEqual([]);
  });

  it('--dtb boots the given machine; --trace carries every stray write', async () => {
    // RAM up to 4 GiB: the IOVAs the SMMU-backed engines were given (just below 4 GiB) are RAM now.
    const dtb = join(tmp, 'virt-3g.dtb');
    writeFileSync(dtb, writeFdt(buildVirtDeviceTree({ ramSize: 0xc000_0000 })));
    const traceFile = join(tmp, 'kexec-trace.json');
    const r = await runCli(['kexec', '--dtb', dtb, '--target', 'unaware', '--quiesce', 'none', '--json', '--trace', traceFile]);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { strayWrites: { master: string; pa: number; len: number; kernel: number }[]; blockedTransactions: number };
    // Every un-quiesced engine strays: those behind the SMMUs at their IOVA, now a physical address.
    const where = new Map<string, Set<number>>();
    for (const w of out.strayWrites) where.set(w.master, (where.get(w.master) ?? new Set()).add(w.pa));
    expect([...where.keys()].sort()).toEqual(['/dma@c000000', '/dma@c010000', '/dma@c020000', '/dma@c030000', '/dma@c040000']);
    for (const m of ['/dma@c000000', '/dma@c010000', '/dma@c020000', '/dma@c030000']) expect([...where.get(m)!]).toEqual([0xffff_f000]);
    expect(out.blockedTransactions).toBe(0);
    const trace = JSON.parse(readFileSync(traceFile, 'utf8')) as { traceEvents: { name: string; args: { args: unknown } }[] };
    const strayEvents = trace.traceEvents.filter((e) => e.name === 'stray-write').map((e) => e.args.args);
    expect(strayEvents).toEqual(expect.arrayContaining(out.strayWrites));
    expect(strayEvents.length).toBeGreaterThanOrEqual(out.strayWrites.length);
  });

  it('names the policies in force in its text report, and kdump figures for --target kdump', async () => {
    const r = await runCli(['kexec', '--target', 'kdump', '--quiesce', 'none', '--target-cmdline', 'iommu.passthrough=1']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('policies in force: panic: no .shutdown ran, the SMMUs stayed as the crashed kernel left them; then a crash kernel with iommu.passthrough=1');
    expect(r.stdout).toMatch(/incoming kernel: booted \(kernel 1, kdump, \d+ devices bound\)/);
    expect(r.stdout).toMatch(/kdump: reservation 0x60000000\+0x4000000, 2 vmcore segment\(s\); bytes changed by DMA after the panic: vmcore \d+/);
    expect(r.stdout).toMatch(/transactions from the hand-over on: issued \d+ \(\+0 outstanding before\) = /);
  });

  it('reports unknown kernel parameters on stderr with the kernel\'s line; --strict-params makes them fatal', async () => {
    const r = await runCli(['kexec', '--cmdline', 'arm-smmu-v3.shutdown_polcy=gbpa-abort']);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('iommu-sim: kernel: Unknown kernel command line parameters "arm-smmu-v3.shutdown_polcy=gbpa-abort", will be passed to user space.\n');
    expect(r.stderr).toContain('did you mean arm-smmu-v3.shutdown_policy?');
    expect(r.stdout).toContain('arm-smmu-v3.shutdown_policy=disable');
    const strict = await runCli(['kexec', '--cmdline', 'arm-smmu-v3.shutdown_polcy=gbpa-abort', '--strict-params']);
    expect(strict.status).toBe(64);
    expect(strict.stderr).toMatch(/^iommu-sim: EINVAL: kernel command line: unknown parameter\(s\) "arm-smmu-v3.shutdown_polcy=gbpa-abort"/);
    const boot = await runCli(['boot', '--cmdline', 'crashkernal=64M', '--json']);
    expect(boot.status).toBe(0);
    expect(boot.stderr).toBe(
      'iommu-sim: kernel: Unknown kernel command line parameters "crashkernal=64M", will be passed to user space.\niommu-sim: kernel: "crashkernal=64M": did you mean crashkernel?\n',
    );
  });

  it('says when the machine has no DMA test engine to observe', async () => {
    const tree = buildVirtDeviceTree();
    tree.root.children.splice(0, tree.root.children.length, ...tree.root.children.filter((n) => !n.name.startsWith('dma@')));
    tree.invalidate();
    const dtb = join(tmp, 'no-engines.dtb');
    writeFileSync(dtb, writeFdt(tree));
    const r = await runCli(['kexec', '--dtb', dtb, '--quiesce', 'none']);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('iommu-sim: this machine has no DMA test engine: the experiment has nothing to observe\n');
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
    expect(out).toMatchObject({ format: 'iommu-sim-run', version: 1, command: 'run' });
    expect(out.inputs.seeds).toEqual({ from: 7, to: 7 });
    expect(out.inputs.scenarios).toEqual([{ name: 'boot-virt', module: null }]);
    expect(out.results[0]).toMatchObject({ scenario: 'boot-virt', seed: 7, verdict: 'pass', error: null });
    expect(out.summary).toEqual({ passed: 1, failed: 0, firstFailure: null });
  });

  it('--trace writes one process per machine, each with its devices as tracks and its DMA', async () => {
    const file = join(tmp, 'run-trace.json');
    const r = await runCli(['run', 'boot-virt', 'smmu-v3-dma', '--json', '--trace', file]);
    expect(r.status).toBe(0);
    const trace = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: { ph: string; name: string; cat: string; pid: number; args: Record<string, unknown> }[] };
    const procs = trace.traceEvents.filter((e) => e.name === 'process_name').map((e) => [e.pid, e.args.name]);
    expect(procs).toEqual([
      [1, 'boot-virt: machine 1'],
      [2, 'smmu-v3-dma: machine 1'],
    ]);
    const tracks = (pid: number): unknown[] => trace.traceEvents.filter((e) => e.name === 'thread_name' && e.pid === pid).map((e) => e.args.name);
    expect(tracks(1)).toContain('/iommu@9050000');
    expect(tracks(2)).toContain('/iommu@9050000');
    const dma = trace.traceEvents.filter((e) => e.cat === 'dma' && e.pid === 2);
    expect(dma.length).toBeGreaterThan(0);
    expect(dma.every((e) => e.args.outcome === 'ok' && typeof e.args.pa === 'number')).toBe(true);
    // Every scenario's trace starts at its machine's construction: its kernel's boot is in it.
    for (const pid of [1, 2]) {
      expect(trace.traceEvents.some((e) => e.pid === pid && e.cat === 'probe' && e.name === 'probe bound')).toBe(true);
    }
  });

  it('an unwritable dump-dtb --out is a usage error', async () => {
    const r = await runCli(['dump-dtb', '--out', join(tmp, 'no-such-dir', 'virt.dtb')]);
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/^iommu-sim: cannot write /);
  });

  it('an unknown scenario is a usage error', async () => {
    const r = await runCli(['run', 'no-such-thing']);
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/no scenario named "no-such-thing"/);
  });
});
