/**
 * `iommu-sim vm`: boot a host kernel on virt, give a VM the SMMUv3's DMA test engine (and, with
 * --pci, the PCIe function 00:01.0), boot a guest kernel on the VMM's port, run one guest DMA, and
 * print what each kernel sees: the host's iommufd objects, VMID and nested STE; the guest's vSMMU,
 * masters with their virtual StreamIDs and domains; and where the guest's bytes landed. With
 * --cmdqv (Grace): the host has a CMDQV and the VM a VINTF; the report adds the host's user VINTF,
 * the guest driver's VINTF0 and the VMM's HW queues, and one strict guest unmap (on the VCMDQ).
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { iommuDomainTypeStr } from '../core/iommu-domain.js';
import { iommuGroupGet } from '../core/iommu-group.js';
import type { ArmSmmuDomain } from '../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import { armSmmuSteConfigName } from '../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import type { Kernel } from '../kernel/kernel.js';
import { bootHostAndGuest, guestEngine, type VmLab } from '../scenarios/lib/vm-lab.js';
import { deviceOf, runIn, V3 } from '../scenarios/smmu-v3-lab.js';
import { findArmSmmuV3 } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { tegra241CmdqvOf, tegra241CmdqvReport } from '../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import { dmaMapSingle, dmaUnmapSingle } from '../core/dma-mapping.js';
import { GUEST_LAYOUT } from '../vmm/vm.js';
import { formatTable } from './table.js';

interface VmCmdOptions {
  seed: number;
  pci?: boolean;
  cmdqv?: boolean;
  json?: boolean;
}

function parseSeed(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 0xffff_ffff) throw new InvalidArgumentError('a seed is an integer in [0, 2^32)');
  return Number(v);
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** A kernel's devices behind an IOMMU: name, driver, StreamIDs, group domain. */
function mastersOf(k: Kernel): string[][] {
  return k.core.devices
    .filter((d) => d.fwspec && d.fwspec.ids.length > 0)
    .map((d) => {
      const dom = iommuGroupGet(d)?.domain;
      return [d.name, d.driver?.name ?? '-', d.fwspec!.ids.map(hex).join(','), dom ? iommuDomainTypeStr(dom.type) : '-'];
    });
}

async function report(lab: VmLab) {
  const eng = guestEngine(lab);
  const buf = await runIn(lab, eng.allocBuffer(4096));
  const st = await runIn(lab, eng.wait(eng.start({ op: 'fill', dst: buf.dma, len: 4096, byte: 0x5a })));
  const s2 = lab.vm.iommufd.hwpt(lab.vm.ids.s2).domain as ArmSmmuDomain;
  const hostDev = deviceOf(lab, V3.engine);
  const hostDom = iommuGroupGet(hostDev)?.domain;
  const hostPa = lab.vm.ipaToPa(buf.cpuAddr);
  return {
    host: {
      kernel: lab.kernel.instance,
      assigned: hostDev.name,
      driver: hostDev.driver?.name ?? null,
      domain: hostDom ? iommuDomainTypeStr(hostDom.type) : null,
      vmid: s2.vmid,
      ste: armSmmuSteConfigName(lab.smmu.strtab.readSte(0x101)),
      iommufdObjects: lab.vm.iommufd.objectCount,
      masters: mastersOf(lab.kernel),
    },
    guest: {
      probeOrder: lab.guest.core.probeOrder.map((d) => `${d.name} (${d.driver?.name ?? 'no driver'})`),
      vsmmuIdr0: hex(lab.vm.vsmmu.idRegisters[0]!),
      masters: mastersOf(lab.guest),
    },
    dma: { state: `${st.state}/${st.dmaStatus}`, iova: hex(buf.dma), ipa: hex(buf.cpuAddr), hostPa: hex(hostPa), landed: lab.machine.cpu.ram.read(hostPa, 4096).every((b) => b === 0x5a) },
    vsmmu: lab.vm.vsmmu.stats,
    cmdqv: await cmdqvReport(lab),
  };
}

/** With a guest VINTF: the host's user VINTF, the guest's VINTF0, the HW queues, one strict unmap's path. */
async function cmdqvReport(lab: VmLab) {
  const vc = lab.vm.vcmdqv;
  const hostCmdqv = tegra241CmdqvOf(lab.smmu);
  const guestCmdqv = tegra241CmdqvOf(findArmSmmuV3(lab.guest.core, `/iommu@${GUEST_LAYOUT.vsmmu.toString(16)}`));
  if (!vc || !hostCmdqv || !guestCmdqv) return null;
  const hostVintf = tegra241CmdqvReport(hostCmdqv).vintfs.find((v) => !v.hypOwn && v.idx > 0) ?? null;
  const eng = guestEngine(lab);
  const page = lab.guest.alloc.allocPages(0, { kind: 'dma', device: eng.dev.name }, { zero: true });
  const iova = await runIn(lab, dmaMapSingle(eng.dev, page, 4096, 'bidirectional'));
  const before = { traps: lab.vm.stats.mmioTraps, pass: lab.vm.stats.passthrough, cmds: lab.vm.vsmmu.stats.commands };
  await runIn(lab, dmaUnmapSingle(eng.dev, iova, 4096, 'bidirectional'));
  return {
    hostVintf,
    guestVintf0: tegra241CmdqvReport(guestCmdqv).vintfs[0] ?? null,
    hwQueues: vc.hwQueues,
    page0PassedThrough: vc.page0PassedThrough,
    unmap: { exits: lab.vm.stats.mmioTraps - before.traps, passthroughAccesses: lab.vm.stats.passthrough - before.pass, vsmmuCommands: lab.vm.vsmmu.stats.commands - before.cmds },
    stats: vc.stats,
  };
}

async function vmCommand(o: VmCmdOptions): Promise<void> {
  const lab = await bootHostAndGuest({ seed: o.seed, pci: o.pci ?? false, cmdqv: o.cmdqv ?? false, guestBootargs: o.cmdqv ? 'iommu.strict=1' : undefined });
  const r = await report(lab);
  if (o.json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return;
  }
  const out: string[] = [];
  out.push(`Host kernel ${r.host.kernel}: ${r.host.assigned} assigned (driver ${r.host.driver ?? 'none'}, domain ${r.host.domain}); VMID ${r.host.vmid}; STE ${r.host.ste}; ${r.host.iommufdObjects} iommufd objects`);
  out.push(formatTable(['host master', 'driver', 'SIDs', 'domain'], r.host.masters));
  out.push('', `Guest kernel: vSMMU IDR0 ${r.guest.vsmmuIdr0}; probed ${r.guest.probeOrder.join(', ')}`);
  out.push(formatTable(['guest master', 'driver', 'vSIDs', 'domain'], r.guest.masters));
  out.push('', `Guest DMA: ${r.dma.state}; IOVA ${r.dma.iova} → IPA ${r.dma.ipa} → host PA ${r.dma.hostPa}; bytes landed: ${r.dma.landed ? 'yes' : 'NO'}`);
  out.push(`vSMMU: ${r.vsmmu.traps} traps, ${r.vsmmu.commands} commands, ${r.vsmmu.ioctls} ioctls, ${r.vsmmu.steInstalls} STE installs`);
  const c = r.cmdqv;
  if (c) {
    const hv = c.hostVintf;
    const gv = c.guestVintf0;
    out.push('', `CMDQV: host VINTF${hv?.idx ?? '?'} ${hv?.enabled ? 'enabled' : 'disabled'}, HYP_OWN=${hv?.hypOwn ? 1 : 0}, VMID ${hv?.vmid ?? '?'}; guest VINTF0 ${gv?.enabled ? 'enabled' : 'disabled'}, HYP_OWN reads ${gv?.hypOwn ? 1 : 0}; page0 ${c.page0PassedThrough ? 'passed through' : 'trapped'}; HW queues ${c.hwQueues.join(', ')}`);
    out.push(formatTable(['guest LVCMDQ', 'host VCMDQ', 'enabled', 'commands', 'syncs', 'errors'], (gv?.vcmdqs ?? []).map((q) => {
      const h = hv?.vcmdqs.find((x) => x.lidx === q.lidx);
      return [String(q.lidx), h ? String(h.idx) : '-', q.enabled ? 'yes' : 'no', String(q.commands), String(q.syncs), String(q.errors)];
    })));
    out.push(`Strict guest unmap: ${c.unmap.exits} exits, ${c.unmap.passthroughAccesses} passed-through accesses, ${c.unmap.vsmmuCommands} vSMMU commands`);
  }
  process.stdout.write(out.join('\n') + '\n');
}

/** Register `iommu-sim vm`. */
export function registerVmCommand(program: Command): void {
  program
    .command('vm')
    .description('boot a host and one guest on virt (the SMMUv3 DMA engine assigned) and print both kernels\' views')
    .option('--seed <n>', 'PRNG seed', parseSeed, 1)
    .option('--pci', 'also assign the PCIe function 00:01.0')
    .option('--cmdqv', 'Grace: the host has a CMDQV and the VM a guest-owned VINTF')
    .option('--json', 'print the report as JSON')
    .action(async (o: VmCmdOptions) => vmCommand(o));
}
