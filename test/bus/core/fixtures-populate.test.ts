/**
 * Platform population over real boards' DTBs: every enabled compatible node a board exposes at the
 * root or on a simple bus becomes a device, masters get their IOMMU fwspec and a link to the IOMMU's
 * device, and nothing but FirmwareErrors (kept per node) comes out of broken corners.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DriverCore } from '../../../bus/driver-core.js';
import { FirmwareError } from '../../../bus/firmware-error.js';
import { parseFdt } from '../../../bus/of/fdt.js';
import { ofPlatformPopulate } from '../../../bus/platform.js';
import { FakePort } from './fake-port.js';

const DIR = fileURLToPath(new URL('../../fixtures/dtb/', import.meta.url));
const blobs = readdirSync(DIR).filter((f) => f.endsWith('.dtb')).sort();

describe('of_platform_populate on real DTBs', () => {
  it.each(blobs)('%s', async (file) => {
    const dt = parseFdt(new Uint8Array(readFileSync(`${DIR}${file}`)));
    const core = new DriverCore({ port: new FakePort(), dt });
    const { devices, errors } = await ofPlatformPopulate(core);
    expect(devices.length).toBeGreaterThan(0);
    expect(errors.every((e) => e instanceof FirmwareError)).toBe(true);
    for (const d of devices) {
      expect(dt.byPath(d.name)).toBe(d.ofNode);
      expect(d.ofNode!.available).toBe(true);
    }
    // Every populated master whose IOMMU also has a device is linked to it.
    for (const d of devices) {
      const iommu = d.fwspec ? core.findDeviceByOfNode(d.fwspec.iommuNode) : undefined;
      if (iommu) expect(core.links.find(d, iommu)).toBeDefined();
    }
  });

  it('links the Juno r2 masters to their MMU-401s', async () => {
    const dt = parseFdt(new Uint8Array(readFileSync(`${DIR}juno-r2.dtb`)));
    const core = new DriverCore({ port: new FakePort(), dt });
    await ofPlatformPopulate(core);
    const suppliers = new Set(core.links.all.map((l) => l.supplier.name));
    expect([...suppliers].every((s) => core.findDevice(s)?.ofNode?.isCompatible('arm,mmu-401'))).toBe(true);
    expect(suppliers.size).toBeGreaterThan(0);
  });
});
