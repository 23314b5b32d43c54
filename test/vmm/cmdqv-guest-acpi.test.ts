/**
 * A Grace guest booted from ACPI: the VMM's tables describe the vSMMUv3 as a generic IORT SMMUv3
 * node and the CMDQV as a DSDT NVDA200C device whose _UID is that node's Identifier; the guest
 * kernel finds its CMDQV by that match, as the host does, and invalidates on its VCMDQ.
 */
import { describe, expect, it } from 'vitest';
import { dmaMapSingle, dmaUnmapSingle } from '../../core/dma-mapping.js';
import { armSmmuV3Of } from '../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { tegra241CmdqvOf } from '../../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import { findTestEngine } from '../../drivers/misc/dma-test-engine.js';
import { acpiBuildDeviceTree, parseAcpiTables } from '../../bus/acpi/acpi-boot.js';
import { cmdqvModelOf } from '../../scenarios/cmdqv-lab.js';
import { bootHostAndGuest } from '../../scenarios/lib/vm-lab.js';
import { runIn } from '../../scenarios/smmu-v3-lab.js';
import { buildGuestAcpi, GUEST_IORT_SMMU_ID } from '../../vmm/guest-acpi.js';

describe('a Grace guest booted from ACPI', () => {
  it('finds its CMDQV by DSDT NVDA200C _UID = its IORT SMMUv3 Identifier, runs VINTF0 in guest mode and unmaps on its VCMDQ with no exit', async () => {
    const lab = await bootHostAndGuest({ seed: 2, cmdqv: true, pci: true, guestBootargs: 'iommu.strict=1', guestFirmware: 'acpi' });
    expect(lab.vm.port.firmware.dtb).toBeNull();
    const t = parseAcpiTables(lab.vm.port.firmware.acpi);
    const smmuNode = t.iort!.nodes.find((n) => n.type === 4)!;
    expect(smmuNode.identifier).toBe(GUEST_IORT_SMMU_ID);
    const smmuDev = lab.guest.core.devices.find((d) => d.driver?.name === 'arm-smmu-v3');
    expect(smmuDev?.name).toMatch(/^IORT:smmuv3@/);
    const gcmdqv = tegra241CmdqvOf(armSmmuV3Of(smmuDev!));
    expect(gcmdqv).not.toBeNull();
    expect(gcmdqv!.vintfs[0]!.enabled).toBe(true);
    expect(gcmdqv!.vintfs[0]!.hypOwn).toBe(false);
    // The companion is the DSDT device, by its ACPI path.
    expect(smmuDev!.ofNode!.has('nvidia,cmdqv')).toBe(true);
    expect(armSmmuV3Of(smmuDev!).implDev?.name).toBe('\\_SB_.CMQ0');

    const eng = findTestEngine(lab.guest.core, '\\_SB_.DEV0');
    const hostQ = cmdqvModelOf(lab.machine).vcmdqs[4];
    const before = { q: hostQ.cq.stats.total, exits: lab.vm.stats.mmioTraps, vsmmu: lab.vm.vsmmu.stats.commands };
    const page = lab.guest.alloc.allocPages(0, { kind: 'dma', device: eng.dev.name }, { zero: true });
    const iova = await runIn(lab, dmaMapSingle(eng.dev, page, 4096, 'bidirectional'));
    expect((await runIn(lab, eng.wait(eng.start({ op: 'fill', dst: iova, len: 64, byte: 0x5a })))).state).toBe('done');
    const exitsBeforeUnmap = lab.vm.stats.mmioTraps;
    await runIn(lab, dmaUnmapSingle(eng.dev, iova, 4096, 'bidirectional'));
    expect(hostQ.cq.stats.total - before.q).toBeGreaterThanOrEqual(2);
    expect(lab.vm.stats.mmioTraps - exitsBeforeUnmap).toBe(0);
    expect(lab.vm.vsmmu.stats.commands - before.vsmmu).toBe(0);
  });

  it('the kernel pairs an NVDA200C device with the SMMUv3 whose IORT Identifier is its _UID, and with no other', () => {
    const spec = {
      gic: { dist: 0x0800_0000, cpu: 0x0801_0000 },
      vsmmu: { base: 0x0905_0000, spis: [74, 75, 76, 77] },
      cmdqv: { base: 0x0910_0000, size: 0x5_0000, spi: 78 },
      ram: { base: 0x4000_0000, size: 0x200_0000 },
      devices: [],
      pci: null,
    };
    const smmuOf = (cmdqvUid: number) => {
      const { tables, memory } = buildGuestAcpi({ ...spec, cmdqvUid });
      const parsed = parseAcpiTables(tables);
      const cmq = parsed.namespace.devices.find((d) => d.hid === 'NVDA200C');
      const { tree } = acpiBuildDeviceTree(parsed, memory);
      const smmu = [...tree.nodes()].find((n) => n.string('compatible') === 'arm,smmu-v3');
      return { uid: cmq?.uid, identifier: parsed.iort?.nodes.find((n) => n.type === 4)?.identifier, linked: smmu?.has('nvidia,cmdqv') ?? null };
    };
    expect(smmuOf(GUEST_IORT_SMMU_ID)).toEqual({ uid: GUEST_IORT_SMMU_ID, identifier: GUEST_IORT_SMMU_ID, linked: true });
    // _UID 0 is the node's index, not its Identifier: no companion.
    expect(smmuOf(0)).toEqual({ uid: 0, identifier: GUEST_IORT_SMMU_ID, linked: false });
  });
});
