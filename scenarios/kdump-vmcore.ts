/**
 * kdump-vmcore: what a kdump user cares about. A kernel with `crashkernel=` panics while DMA
 * engines behind its SMMUs run; the crash kernel boots inside its reservation with the rest of RAM
 * as the dump. If the crash kernel lets the old DMA through untranslated (iommu.passthrough=1,
 * disable_bypass=0), the engines' IOVAs become physical addresses in the dump and corrupt it; with
 * the defaults (DMA domains, unattached streams abort) the dump keeps what it held at the panic,
 * apart from the engines' own buffers in the moment before the crash kernel's SMMU drivers take over.
 * With the reservation where arm64 puts it by default (the top of memory below 4 GiB, where the
 * IOVAs are too), the stray writes land in the crash kernel itself instead.
 */
import { runKexecExperiment } from './lib/kexec-experiment.js';
import { KDUMP_BYPASS_CMDLINE, kexecLabMachine } from './lib/kexec-matrix.js';
import { Checks, type Scenario } from './scenario.js';

export const scenario: Scenario = {
  name: 'kdump-vmcore',
  shows: 'panic into a crash kernel with DMA running: bypass corrupts the dump, abort keeps it; a top-of-memory reservation gets hit itself',
  async run(ctx) {
    const c = new Checks();
    const common = { target: 'kdump', quiesce: 'none', storm: true } as const;
    const abort = await runKexecExperiment(kexecLabMachine(ctx.seed), { ...common });
    const bypass = await runKexecExperiment(kexecLabMachine(ctx.seed), { ...common, targetCmdline: KDUMP_BYPASS_CMDLINE });
    const topRes = await runKexecExperiment(kexecLabMachine(ctx.seed), { ...common, targetCmdline: KDUMP_BYPASS_CMDLINE, crashkernel: '64M' });

    c.ok('the crash kernel boots as a kdump kernel', abort.boot.ok && abort.boot.kdump && bypass.boot.ok && bypass.boot.kdump);
    c.ok('it uses only its reservation', abort.second !== null && abort.second.memory.length === 1 && abort.second.memory[0]!.base === 0x6000_0000);
    c.ok('the dump is the rest of RAM', (abort.second?.vmcore ?? []).reduce((a, s) => a + s.size, 0) === 0xc000_0000 - 64 * 2 ** 20);
    c.ok('the policies in force are named', abort.policies.summary.startsWith('panic: no .shutdown ran'));
    c.ok('bypass: DMA after the panic changes the dump outside the engines\' buffers', (bypass.kdump?.vmcoreBytesChangedOutsideBuffers ?? 0) > 0);
    c.equal('abort: no byte of the dump outside the engines\' buffers changes', abort.kdump?.vmcoreBytesChangedOutsideBuffers, 0);
    c.ok('abort: the engines\' transactions are blocked or faulted instead', abort.accounting.blocked + abort.accounting.faulted > 0 && abort.accounting.stray === 0);
    c.ok('a reservation at the top of low memory takes the stray writes into the crash kernel\'s own memory', (topRes.kdump?.crashKernelBytesChanged ?? 0) > 0);
    for (const [label, r] of [['abort', abort], ['bypass', bypass], ['top reservation', topRes]] as const) {
      c.ok(`${label}: every transaction is accounted`, r.accounting.balanced);
    }
    return c.result({
      'vmcore bytes changed (bypass)': bypass.kdump?.vmcoreBytesChanged ?? -1,
      'vmcore bytes changed outside buffers (bypass)': bypass.kdump?.vmcoreBytesChangedOutsideBuffers ?? -1,
      'vmcore bytes changed (abort)': abort.kdump?.vmcoreBytesChanged ?? -1,
      'vmcore bytes changed outside buffers (abort)': abort.kdump?.vmcoreBytesChangedOutsideBuffers ?? -1,
      'crash kernel bytes changed (64M@0x60000000, bypass)': bypass.kdump?.crashKernelBytesChanged ?? -1,
      'crash kernel bytes changed (64M at the top, bypass)': topRes.kdump?.crashKernelBytesChanged ?? -1,
    });
  },
};
