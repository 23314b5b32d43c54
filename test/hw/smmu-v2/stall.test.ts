import { describe, expect, it } from 'vitest';
import {
  AFE,
  Rig,
  CFCFG,
  CFIE,
  CFRE,
  FAR,
  FSR,
  HUPCF,
  M,
  MULTI,
  RAM_BASE,
  RESUME,
  SS,
  TF,
  TRE,
  Tables,
} from './rig.js';

const PA1 = RAM_BASE + 0x20_0000;
const PA2 = RAM_BASE + 0x30_0000;
const FORMAT_AARCH64 = 2 << 9;

function rig(sctlr: number): { b: Rig; t: Tables } {
  const b = new Rig({ model: 'qcom-smmu-500', numSmr: 8, numCb: 8, numPageNdxb: 3 });
  const t = Tables.stage1(b);
  t.map(0x1000, PA1);
  b.stage1Bank(2, t.root, 1, sctlr);
  b.mapStream(0, 0x100, 2); // the GPU
  b.mapStream(1, 0x101, 2); // a second master on the same bank
  b.enable();
  return { b, t };
}

const STALL = M | TRE | AFE | CFRE | CFIE | CFCFG;

describe('SMMUv2 stall mode (SCTLR.CFCFG=1)', () => {
  it('a faulting transaction is held with FSR.SS until RESUME retries it; the bytes land after the mapping does', () => {
    const { b, t } = rig(STALL);
    const w = b.write(0x100, 0x5008, [0xaa, 0xbb], { master: '/gpu' });
    expect(w.c).toBeNull(); // held
    expect(b.cb(2, FSR)).toBe((SS | TF | FORMAT_AARCH64) >>> 0);
    expect(b.cb64(2, FAR)).toBe(0x5008n);
    expect(b.smmu.stalledCount(2)).toBe(1);
    b.run();
    expect(b.contextLines[2].raised).toBe(1);
    expect(w.c).toBeNull(); // still held: nothing but RESUME releases it

    // The handler maps the page, clears FSR (SS stays while the transaction is stalled), resumes.
    t.map(0x5000, PA2);
    b.setCb(2, FSR, b.cb(2, FSR));
    expect(b.cb(2, FSR)).toBe(SS);
    b.setCb(2, RESUME, 0); // TnR = 0: retry
    expect(w.c).toBeNull(); // RESUME is carried out in a scheduled step
    b.run();
    expect(w.c).toMatchObject({ status: 'ok', pa: PA2 + 8 });
    expect(Array.from(b.memory.read(PA2 + 8, 2))).toEqual([0xaa, 0xbb]);
    expect(b.cb(2, FSR)).toBe(0);
    expect(b.smmu.stalledCount(2)).toBe(0);
  });

  it('RESUME is ignored while FSR still records the fault (MMU-500): software must clear FSR first', () => {
    const { b, t } = rig(STALL);
    const w = b.read(0x100, 0x5000, 4);
    t.map(0x5000, PA2);
    b.setCb(2, RESUME, 0);
    b.run();
    expect(w.c).toBeNull();
    expect(b.cb(2, FSR) & SS).toBe(SS);
    expect(b.smmu.stats.resumesIgnored).toBe(1);
    b.setCb(2, FSR, TF);
    b.setCb(2, RESUME, 0);
    b.run();
    expect(w.c?.status).toBe('ok');
  });

  it('RESUME with TnR=1 terminates: the master sees an error and nothing is written', () => {
    const { b } = rig(STALL);
    const w = b.write(0x100, 0x5000, [1, 2, 3]);
    b.setCb(2, FSR, TF);
    b.setCb(2, RESUME, 1);
    b.run();
    expect(w.c?.status).toBe('terminated');
    expect(b.cb(2, FSR)).toBe(0);
    // A RESUME with nothing stalled is ignored.
    b.setCb(2, RESUME, 0);
    b.run();
    expect(b.smmu.stats.resumesIgnored).toBe(1);
  });

  it('a retry that faults again stalls again and records a new fault', () => {
    const { b } = rig(STALL);
    const w = b.read(0x100, 0x5000, 4);
    b.run();
    expect(b.contextLines[2].raised).toBe(1);
    b.setCb(2, FSR, TF);
    b.setCb(2, RESUME, 0);
    b.run();
    expect(w.c).toBeNull();
    expect(b.cb(2, FSR)).toBe((SS | TF | FORMAT_AARCH64) >>> 0);
    expect(b.contextLines[2].raised).toBe(2);
  });

  it('HUPCF=0: another master on the stalled bank waits behind the stall, then proceeds in order', () => {
    const { b, t } = rig(STALL);
    const gpu = b.write(0x100, 0x5000, [1], { master: '/gpu' });
    const other1 = b.write(0x101, 0x1000, [7], { master: '/dsp' }); // mapped: would succeed
    const other2 = b.write(0x101, 0x1001, [8], { master: '/dsp' });
    expect(other1.c).toBeNull();
    expect(other2.c).toBeNull();
    expect(b.smmu.waitingCount(2)).toBe(2);
    expect(b.memory.read8(PA1)).toBe(0);
    t.map(0x5000, PA2);
    b.setCb(2, FSR, TF);
    b.setCb(2, RESUME, 0);
    b.run();
    expect(gpu.c?.status).toBe('ok');
    expect(other1.c?.status).toBe('ok');
    expect(other2.c?.status).toBe('ok');
    expect(Array.from(b.memory.read(PA1, 2))).toEqual([7, 8]);
  });

  it('HUPCF=1: another master proceeds while one is stalled; a second fault stalls too and sets MULTI', () => {
    const { b, t } = rig(STALL | HUPCF);
    const gpu = b.write(0x100, 0x5000, [1]);
    const other = b.write(0x101, 0x1000, [7]);
    expect(gpu.c).toBeNull();
    expect(other.c).toMatchObject({ status: 'ok', pa: PA1 });
    const second = b.read(0x101, 0x6000, 4);
    expect(second.c).toBeNull();
    expect(b.cb(2, FSR)).toBe((SS | TF | MULTI | FORMAT_AARCH64) >>> 0);
    expect(b.cb64(2, FAR)).toBe(0x5000n);
    expect(b.smmu.stalledCount(2)).toBe(2);
    // One RESUME retries every stalled transaction of the bank.
    t.map(0x5000, PA2);
    t.map(0x6000, PA2 + 0x1000);
    b.setCb(2, FSR, b.cb(2, FSR));
    b.setCb(2, RESUME, 0);
    b.run();
    expect(gpu.c?.status).toBe('ok');
    expect(second.c?.status).toBe('ok');
  });

  it('a master that cannot stall is stalled all the same, and counted', () => {
    const { b } = rig(STALL);
    b.smmu.setMasterCanStall('/display', false);
    const rec = b.trace.record(['custom']);
    const w = b.read(0x101, 0x5000, 4, { master: '/display' });
    expect(w.c).toBeNull();
    expect(b.smmu.stats.stallsOfNonStallingMasters).toBe(1);
    expect(rec.events.some((e) => e.kind === 'custom' && e.name === 'smmu-v2.stall-of-non-stalling-master')).toBe(true);
    rec.stop();
  });

  it('the stall round trip works many times over (fault, handler, RESUME, retry)', () => {
    const { b, t } = rig(STALL);
    for (let i = 0; i < 50; i++) {
      const va = 0x10_0000 + i * 0x1000;
      const w = b.write(0x100, va, [i]);
      expect(w.c).toBeNull();
      t.map(va, PA2 + i * 0x1000);
      b.setCb(2, FSR, b.cb(2, FSR));
      b.setCb(2, RESUME, 0);
      b.run();
      expect(w.c?.status).toBe('ok');
      expect(b.memory.read8(PA2 + i * 0x1000)).toBe(i);
    }
    expect(b.smmu.stats.stalls).toBe(50);
    expect(b.smmu.stats.resumesAccepted).toBe(50);
  });

  it('a reset drops held transactions with an abort instead of leaving the masters hanging', () => {
    const { b } = rig(STALL);
    const w = b.read(0x100, 0x5000, 4);
    const waiting = b.read(0x101, 0x1000, 4);
    expect(w.c).toBeNull();
    expect(waiting.c).toBeNull();
    b.smmu.reset();
    expect(w.c?.status).toBe('abort');
    expect(waiting.c?.status).toBe('abort');
    expect(b.smmu.stalledCount(2)).toBe(0);
  });
});
