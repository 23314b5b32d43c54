/**
 * The policy matrix, every cell checked for the direction the kexec discussion predicts: bypass
 * lets stale DMA land (into the next kernel's memory, or into the dump), abort blocks it and shows
 * the storm instead, and nothing is ever left unaccounted.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { cellName, defaultMatrixInputs, matrixCells, runKexecMatrix, type MatrixReport } from '../../scenarios/lib/kexec-matrix.js';

let report: MatrixReport;

beforeAll(async () => {
  report = await runKexecMatrix(defaultMatrixInputs({ seed: 5 }));
}, 120_000);

describe('kexec policy matrix', () => {
  it('runs every combination: 2 SMMU kinds x their policies x 3 targets x 2 quiesce modes', () => {
    expect(report.cells).toHaveLength((3 + 4) * 3 * 2);
    expect(report.format).toBe(1);
    expect(report.inputs.policies).toEqual({ v2: ['bypass', 'abort-unmatched', 'abort-all', 'translate'], v3: ['disable', 'gbpa-abort', 'ste-abort'] });
    expect(report.cells.map(cellName)).toEqual(matrixCells(report.inputs).map(cellName));
  });

  it('every cell boots its incoming kernel, ran engines, and accounts every transaction exactly', () => {
    for (const c of report.cells) {
      const name = cellName(c);
      expect(c.boot.ok, name).toBe(true);
      expect(c.boot.kdump, name).toBe(c.target === 'kdump');
      expect(c.observable, name).toBe(true);
      expect(c.engines.length, name).toBe(2);
      const a = c.accounting;
      expect(a.landedOwned + a.stray + a.blocked + a.faulted + a.outstanding, name).toBe(a.issued + a.carriedIn);
      expect(a.balanced, name).toBe(true);
      // Nothing is left stalled: a kdump arm-smmu-v3 kernel, whose event queue stays off, gives the
      // stall-capable engine a terminating context instead of one nobody could ever resume.
      expect(a.outstanding, name).toBe(0);
    }
  });

  it('every cell names the policies in force', () => {
    for (const c of report.cells) {
      if (c.target === 'kdump') expect(c.policies.summary, cellName(c)).toMatch(/^panic: no \.shutdown ran/);
      else expect(c.policies.summary, cellName(c)).toContain(`${c.kind === 'v3' ? 'arm-smmu-v3' : 'arm-smmu'}.shutdown_policy=${c.policy}`);
    }
  });

  it('quiesced engines (kexec): nothing strays, nothing is blocked, no storm', () => {
    for (const c of report.cells.filter((x) => x.quiesce === 'all' && x.target !== 'kdump')) {
      expect([c.strayWrites, c.blocked, c.faulted, c.storm.failed], cellName(c)).toEqual([0, 0, 0, 0]);
    }
  });

  it('bypass + unquiesced: stray writes land (for as long as nobody takes the SMMU back)', () => {
    for (const c of report.cells.filter((x) => x.stance === 'bypass' && x.quiesce === 'none' && x.target !== 'kdump')) {
      expect(c.strayWrites, cellName(c)).toBeGreaterThan(0);
      expect(c.strayBytes, cellName(c)).toBe(c.strayWrites * 256);
    }
    // Into an unaware kernel the window never closes: nearly every transaction strays.
    for (const c of report.cells.filter((x) => x.stance === 'bypass' && x.quiesce === 'none' && x.target === 'unaware')) {
      expect(c.strayWrites, cellName(c)).toBeGreaterThan(c.accounting.issued - 4);
      expect(c.blocked + c.faulted, cellName(c)).toBe(0);
    }
  });

  it('abort policies: no stray write, transactions blocked instead, and a storm that does not stop by itself', () => {
    for (const c of report.cells.filter((x) => x.stance === 'abort' && x.quiesce === 'none' && x.target !== 'kdump')) {
      expect(c.strayWrites, cellName(c)).toBe(0);
      expect(c.blocked, cellName(c)).toBeGreaterThan(0);
      expect(c.storm.failedPerSecond, cellName(c)).toBeGreaterThan(100_000);
      expect(c.storm.quietAfterNs, cellName(c)).toBeNull();
    }
  });

  it('an IOMMU-aware incoming kernel sees the storm as interrupts and (rate-limited) log lines; an unaware one sees nothing', () => {
    for (const c of report.cells.filter((x) => x.stance === 'abort' && x.quiesce === 'none' && x.target === 'aware')) {
      expect(c.storm.interrupts, cellName(c)).toBeGreaterThan(0);
      expect(c.storm.iommuLogLines, cellName(c)).toBeGreaterThan(0);
      expect(c.faulted, cellName(c)).toBeGreaterThan(0);
    }
    for (const c of report.cells.filter((x) => x.target === 'unaware')) {
      expect([c.storm.interrupts, c.storm.iommuLogLines], cellName(c)).toEqual([0, 0]);
    }
  });

  it('kdump: no .shutdown runs, so quiescing changes nothing', () => {
    const kd = report.cells.filter((x) => x.target === 'kdump');
    for (const c of kd.filter((x) => x.quiesce === 'all')) {
      const twin = kd.find((x) => x.kind === c.kind && x.policy === c.policy && x.quiesce === 'none')!;
      expect([c.strayWrites, c.blocked, c.faulted, c.kdump], cellName(c)).toEqual([twin.strayWrites, twin.blocked, twin.faulted, twin.kdump]);
    }
  });

  it('kdump with bypass corrupts the vmcore outside the masters\' buffers; with abort it does not', () => {
    for (const c of report.cells.filter((x) => x.target === 'kdump')) {
      const k = c.kdump!;
      expect(k.reservation, cellName(c)).toEqual({ base: 0x6000_0000, size: 64 * 2 ** 20 });
      if (c.stance === 'bypass') {
        expect(k.vmcoreBytesChangedOutsideBuffers, cellName(c)).toBeGreaterThan(0);
        expect(c.strayByOwner, cellName(c)).toEqual({ 'vmcore (crashed kernel memory)': c.strayWrites });
      } else {
        expect(k.vmcoreBytesChangedOutsideBuffers, cellName(c)).toBe(0);
        expect(c.strayWrites, cellName(c)).toBe(0);
        expect(c.blocked + c.faulted, cellName(c)).toBeGreaterThan(0);
      }
      // The reservation sits clear of the IOVAs: the crash kernel's own memory is untouched.
      expect(k.crashKernelBytesChanged, cellName(c)).toBe(0);
    }
  });

  it('kdump storms: arm-smmu-v3 in a crash kernel keeps its event queue off (silent), arm-smmu takes context fault interrupts', () => {
    for (const c of report.cells.filter((x) => x.target === 'kdump' && x.stance === 'abort')) {
      if (c.kind === 'v3') expect([c.storm.interrupts, c.storm.iommuLogLines], cellName(c)).toEqual([0, 0]);
      else expect(c.storm.interrupts, cellName(c)).toBeGreaterThan(0);
      expect(c.faulted, cellName(c)).toBeGreaterThan(0);
    }
  });
});
