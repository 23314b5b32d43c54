/**
 * Updating a live STE or CD (kernel: arm_smmu_write_entry() and arm_smmu_entry_qword_diff()).
 *
 * The SMMU reads these 64-byte structures with only 64-bit single-copy atomicity, and may fetch them at
 * any time. Changing one in place must therefore never let it see a mix of old and new qwords that
 * means something neither did. The writer compares what the hardware uses of the current entry with
 * what it will use of the target (the `getUsed` hook, per structure type) and picks one of:
 * - hitless: only one qword has used bits that change. Write every bit the current entry ignores,
 *   sync, write that "critical" qword, sync, then tidy the now-ignored bits, sync;
 * - disruptive: several qwords change. Write qword 0 with V=0, sync, qwords 1..7, sync, qword 0, sync;
 * - nothing used changes: write whatever differs, once.
 * Bits the `getUpdateSafe` hook names (STE: MEV always, EATS_TRANS unless S1CHK or S2S is involved)
 * count as unused for the ordering: they are written in the first step even when the hardware
 * reads them, so a nested STE or an ATS on/off change stays hitless exactly where the kernel's is.
 * Each step that changes nothing skips its sync. The sync hook makes the hardware drop what it
 * cached (CFGI_STE / CFGI_CD + CMD_SYNC in the driver; a recorder in tests).
 *
 * Entries are handled as 16 little-endian u32 words (qword q = words 2q, 2q+1). Builders of targets
 * are pure functions elsewhere (arm-smmu-v3-ste.ts, arm-smmu-v3-cd.ts).
 */
import { KernelError } from '../../bus/errno.js';

/** Qwords in an STE or a CD (kernel: NUM_ENTRY_QWORDS). */
export const NUM_ENTRY_QWORDS = 8;
export const NUM_ENTRY_WORDS = 16;

/** kernel: struct arm_smmu_entry_writer_ops (+ how a qword reaches the memory the SMMU reads). */
export interface ArmSmmuEntryWriter {
  /** Mark in `used` every bit of `ent` the hardware reads for the configuration `ent` describes. */
  getUsed(ent: Uint32Array, used: Uint32Array): void;
  /**
   * Mark in `safe` the bits that may change between `cur` and `target` in any order, even while
   * used (STEs only: MEV, EATS where allowed). Absent: no bit is update-safe.
   */
  getUpdateSafe?(cur: Uint32Array, target: Uint32Array, safe: Uint32Array): void;
  /** Make the hardware forget its cached copy and wait until it has. */
  sync(): void | Promise<void>;
  /** Store qword `i` of `entry` where the hardware reads it (one 64-bit store). Absent: `entry` is it. */
  writeQword?(entry: Uint32Array, i: number): void;
}

/** A zeroed entry. */
export function newEntry(): Uint32Array {
  return new Uint32Array(NUM_ENTRY_WORDS);
}

function qwordEqual(a: Uint32Array, b: Uint32Array, i: number): boolean {
  return a[2 * i] === b[2 * i] && a[2 * i + 1] === b[2 * i + 1];
}

/**
 * Which qwords need their used bits changed to go from `entry` to `target` (bit i: qword i), and in
 * `unusedUpdate` the entry with every currently ignored bit already at its target value.
 * // kernel: arm_smmu_entry_qword_diff()
 */
export function armSmmuEntryQwordDiff(writer: ArmSmmuEntryWriter, entry: Uint32Array, target: Uint32Array, unusedUpdate: Uint32Array): number {
  const curUsed = newEntry();
  const targetUsed = newEntry();
  const safe = newEntry();
  writer.getUsed(entry, curUsed);
  writer.getUsed(target, targetUsed);
  writer.getUpdateSafe?.(entry, target, safe);
  let diff = 0;
  for (let i = 0; i < NUM_ENTRY_QWORDS; i++) {
    for (let h = 0; h < 2; h++) {
      const w = 2 * i + h;
      // Safe bits matter only where both configurations use them; a bit only one side uses is
      // already sequenced by the unused-bits rule.
      safe[w] = (safe[w]! & targetUsed[w]! & curUsed[w]!) >>> 0;
      // A builder may only set bits the used function says are used.
      if ((target[w]! & ~targetUsed[w]!) !== 0) {
        throw new KernelError(
          'EINVAL',
          `entry writer: target qword ${i} sets bits 0x${((target[w]! & ~targetUsed[w]!) >>> 0).toString(16)} (word ${h}) that its used mask does not cover`,
        );
      }
      // Bits can change now because nothing reads them (or because changing them early is safe).
      curUsed[w] = (curUsed[w]! & ~safe[w]!) >>> 0;
      unusedUpdate[w] = ((entry[w]! & curUsed[w]!) | (target[w]! & ~curUsed[w]!)) >>> 0;
      // A used bit of the target still differs after that: this qword must change while in use.
      if (((unusedUpdate[w]! & targetUsed[w]!) >>> 0) !== target[w]) diff |= 1 << i;
    }
  }
  return diff;
}

/** Write qwords [start, start+len) of `target` that differ; sync if anything changed. // kernel: entry_set() */
async function entrySet(writer: ArmSmmuEntryWriter, entry: Uint32Array, target: Uint32Array, start: number, len: number): Promise<boolean> {
  let changed = false;
  for (let i = start; i < start + len; i++) {
    if (qwordEqual(entry, target, i)) continue;
    entry[2 * i] = target[2 * i]!;
    entry[2 * i + 1] = target[2 * i + 1]!;
    writer.writeQword?.(entry, i);
    changed = true;
  }
  if (changed) await writer.sync();
  return changed;
}

function popcount8(x: number): number {
  let n = 0;
  for (let v = x; v !== 0; v &= v - 1) n++;
  return n;
}

/**
 * Turn the live `entry` into `target` without the hardware ever seeing a torn mix (see the file
 * header). `entry` is updated in place (and through `writer.writeQword`). // kernel: arm_smmu_write_entry()
 */
export async function armSmmuWriteEntry(writer: ArmSmmuEntryWriter, entry: Uint32Array, target: Uint32Array): Promise<void> {
  const unusedUpdate = newEntry();
  const diff = armSmmuEntryQwordDiff(writer, entry, target, unusedUpdate);
  if (popcount8(diff) === 1) {
    // Hitless: ignored bits first (except in the critical qword, written next anyway), then the
    // critical qword, then clear what the new configuration ignores.
    const critical = 31 - Math.clz32(diff);
    unusedUpdate[2 * critical] = entry[2 * critical]!;
    unusedUpdate[2 * critical + 1] = entry[2 * critical + 1]!;
    await entrySet(writer, entry, unusedUpdate, 0, NUM_ENTRY_QWORDS);
    await entrySet(writer, entry, target, critical, 1);
    await entrySet(writer, entry, target, 0, NUM_ENTRY_QWORDS);
  } else if (diff !== 0) {
    // Disruptive: V=0 in qword 0, the other qwords, then qword 0.
    unusedUpdate[0] = 0;
    unusedUpdate[1] = 0;
    await entrySet(writer, entry, unusedUpdate, 0, 1);
    await entrySet(writer, entry, target, 1, NUM_ENTRY_QWORDS - 1);
    await entrySet(writer, entry, target, 0, 1);
  } else {
    // No used bit changes: whatever differs is ignored by the hardware.
    await entrySet(writer, entry, target, 0, NUM_ENTRY_QWORDS);
  }
}
