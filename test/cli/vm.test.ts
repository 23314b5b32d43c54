/** `iommu-sim vm`: both kernels' views and the guest DMA's path, as text and JSON. */
import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli.js';

describe('iommu-sim vm', () => {
  it('prints the host (nested STE, VMID) and the guest (vSMMU, masters with virtual StreamIDs) and where the guest DMA landed', async () => {
    const r = await runCli(['vm', '--pci']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Host kernel 0: \/dma@c010000 assigned \(driver none, domain Nested\); VMID \d+; STE config 7/);
    expect(r.stdout).toMatch(/Guest kernel: vSMMU IDR0 0x[0-9a-f]+; probed \/iommu@9050000 \(arm-smmu-v3\)/);
    expect(r.stdout).toMatch(/\/dev@c010000 +dma-test-engine +0x10 +Translated/);
    expect(r.stdout).toMatch(/0000:00:01\.0 +- +0x8 +Translated/);
    expect(r.stdout).toMatch(/Guest DMA: done\/ok; .* bytes landed: yes/);
  });

  it('--json gives the same report as data', async () => {
    const r = await runCli(['vm', '--json', '--seed', '2']);
    const j = JSON.parse(r.stdout) as { host: { ste: string }; dma: { landed: boolean }; guest: { masters: string[][] } };
    expect(j.host.ste).toBe('config 7');
    expect(j.dma.landed).toBe(true);
    expect(j.guest.masters[0][2]).toBe('0x10');
  });

  it('--cmdqv: the host user VINTF (HYP_OWN=0), the guest VINTF0 over it, HW queues, and a strict unmap on the VCMDQ with no exit', async () => {
    const r = await runCli(['vm', '--cmdqv']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/CMDQV: host VINTF1 enabled, HYP_OWN=0, VMID \d+; guest VINTF0 enabled, HYP_OWN reads 0; page0 passed through; HW queues \d+, \d+, \d+, \d+/);
    expect(r.stdout).toMatch(/Strict guest unmap: 0 exits, [1-9]\d* passed-through accesses, 0 vSMMU commands/);
    const j = JSON.parse((await runCli(['vm', '--cmdqv', '--json'])).stdout) as { cmdqv: { guestVintf0: { vcmdqs: { commands: number }[] }; hostVintf: { vcmdqs: { idx: number }[] } } };
    expect(j.cmdqv.hostVintf.vcmdqs.map((q) => q.idx)).toEqual([4, 5, 6, 7]);
    expect(j.cmdqv.guestVintf0.vcmdqs[0].commands).toBeGreaterThan(0);
  });
});
