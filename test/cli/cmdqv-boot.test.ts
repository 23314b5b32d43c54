import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli.js';

describe('iommu-sim boot --cmdqv', () => {
  it('--json adds `cmdqvs` with the documented shape: status, VINTFs, VCMDQs', async () => {
    const r = await runCli(['boot', '--cmdqv', '--json']);
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(Object.keys(report)).toEqual(['format', 'version', 'command', 'inputs', 'iommus', 'masters', 'pciHosts', 'cmdqvs']);
    expect(report.inputs).toEqual({ seed: 1, cmdqv: true });
    expect(report.cmdqvs).toHaveLength(1);
    const c = report.cmdqvs[0];
    expect(Object.keys(c)).toEqual(['node', 'smmu', 'status', 'base', 'version', 'enabled', 'bypassVcmdq', 'numVintfs', 'numVcmdqs', 'lvcmdqsPerVintf', 'sidsPerVintf', 'vintfs']);
    expect(c).toMatchObject({ node: '/cmdqv@9100000', smmu: '/iommu@9050000', status: 'probed', base: 0x9100000, version: 1, enabled: true, numVintfs: 4, numVcmdqs: 16, lvcmdqsPerVintf: 4, sidsPerVintf: 16 });
    expect(c.vintfs).toHaveLength(1);
    expect(c.vintfs[0]).toMatchObject({ idx: 0, enabled: true, hypOwn: true, vmid: 0 });
    expect(c.vintfs[0].vcmdqs.map((q: { idx: number; lidx: number; enabled: boolean }) => [q.idx, q.lidx, q.enabled])).toEqual([[0, 0, true], [1, 1, true], [2, 2, true], [3, 3, true]]);
    expect(Object.keys(c.vintfs[0].vcmdqs[0])).toEqual(['idx', 'lidx', 'enabled', 'entries', 'commands', 'syncs', 'errors', 'guestFilter']);
  });

  it('prints a CMDQVs section; the plain virt has none', async () => {
    const r = await runCli(['boot', '--cmdqv']);
    expect(r.stdout).toMatch(/\nCMDQVs\n\/cmdqv@9100000 at 0x9100000 \(SMMU \/iommu@9050000\): probed, v1, CMDQV enabled, 4 VINTFs, 16 VCMDQs/);
    expect(r.stdout).toMatch(/ {2}VINTF0: enabled, HYP_OWN=1 \(host\), VMID 0\n {4}LVCMDQ0 = VCMDQ0: enabled/);
    const plain = await runCli(['boot', '--json']);
    expect(Object.keys(JSON.parse(plain.stdout))).toEqual(['format', 'version', 'command', 'inputs', 'iommus', 'masters', 'pciHosts']);
  });
});
