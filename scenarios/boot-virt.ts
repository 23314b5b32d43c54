/**
 * boot-virt: the built-in machine boots. Every device the firmware describes either gets a driver
 * or is reported; every SMMU node is accounted for; PCI endpoints are enumerated through ECAM.
 *
 * Copy this file to write your own scenario: build a machine, boot, look, return checks + figures.
 */
import { Checks, type Scenario } from './scenario.js';
import { bootReport } from './lib/boot-report.js';
import { boot, virtMachine } from './lib/lab.js';

export const scenario: Scenario = {
  name: 'boot-virt',
  shows: 'the virt machine boots from its DTB; SMMUs, masters and PCI endpoints are found',
  async run(ctx) {
    const machine = virtMachine({ seed: ctx.seed });
    const kernel = await boot(machine);
    const report = bootReport(machine, kernel);
    const pciFunctions = kernel.core.devices.filter((d) => d.bus.name === 'pci');
    const c = new Checks();
    c.equal('SMMU nodes found', report.iommus.map((i) => i.node), ['/iommu@9050000', '/iommu@b000000']);
    c.equal('masters that name an IOMMU', report.masters.length, 4);
    c.equal('PCI hosts with an iommu-map', report.pciHosts.map((h) => h.node), ['/pcie@3f000000']);
    c.equal('PCI functions enumerated through ECAM', pciFunctions.map((d) => d.name), [
      '0000:00:01.0',
      '0000:00:02.0',
      '0000:00:03.0',
      '0000:00:03.1',
    ]);
    c.equal('no device left on deferred probe', kernel.deferredAtBoot.length, 0);
    return c.result({
      iommus: report.iommus.map((i) => `${i.node}:${i.status}`).join(' '),
      devices: kernel.core.devices.length,
      bound: kernel.core.probeOrder.length,
      'boot time (µs)': Math.round(machine.scheduler.now / 1000),
    });
  },
};
