import { describe, expect, it } from 'vitest';
import { iommuFwspecAddSpecifier, iommuFwspecInit } from '../../bus/iommu-fwspec.js';
import { DtBuilder } from '../../bus/of/dt-builder.js';
import type { PciDevice } from '../../bus/pci/pci-device.js';
import { iommuAttachDevice, iommuAttachGroup } from '../../core/iommu-attach.js';
import { devIommu } from '../../core/iommu-device.js';
import { iommuPagingDomainAlloc } from '../../core/iommu-domain.js';
import { genericSingleDeviceGroup, iommuGroupGet } from '../../core/iommu-group.js';
import { PCI_ACS_CR, PCI_ACS_RR, PCI_ACS_SV, PCI_ACS_UF, pciAcsEnabled, PCI_EXP_TYPE_ENDPOINT, PCI_EXP_TYPE_ROOT_PORT, REQ_ACS_FLAGS } from '../../core/pci-acs.js';
import { fakePciFunction, fakePciHost, type FakePciFunction } from './kernel-rig.js';
import { mockRig, names } from './mock-rig.js';
import { expectErrno } from '../lib/errno.js';

const FULL_ACS = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF;

describe('platform device groups', () => {
  it('gives each master its own group unless they share a stream ID', async () => {
    const s = await mockRig({
      masters: [
        { name: 'a@1', ids: [[1]] },
        { name: 'b@2', ids: [[2]] },
        { name: 'c@3', ids: [[2], [3]] },
        { name: 'd@4', ids: [[4]] },
      ],
    });
    const [a, b, c, d] = ['a@1', 'b@2', 'c@3', 'd@4'].map((n) => iommuGroupGet(s.dev(n))!);
    expect(new Set([a, b, d]).size).toBe(3);
    expect(c).toBe(b);
    expect(names(b.devices)).toEqual(['/b@2', '/c@3']);
    // Both devices of the shared group were attached to its one default domain.
    expect(s.mock.rid.get(s.dev('b@2'))).toBe(b.defaultDomain);
    expect(s.mock.rid.get(s.dev('c@3'))).toBe(b.defaultDomain);
    expect(s.mock.callsOf('alloc')).toHaveLength(3);
    // A multi-device group cannot be attached device by device.
    const dom = iommuPagingDomainAlloc(s.dev('b@2'));
    await expectErrno(iommuAttachDevice(dom, s.dev('b@2')), 'EINVAL', /EINVAL.*2 devices/);
    await s.k.run(iommuAttachGroup(dom, b));
    expect(s.mock.rid.get(s.dev('c@3'))).toBe(dom);
  });

  it('can put every device of an IOMMU in one group', async () => {
    const s = await mockRig({ masters: [{ name: 'a@1', ids: [[1]] }, { name: 'b@2', ids: [[2]] }], mock: { group: genericSingleDeviceGroup } });
    expect(iommuGroupGet(s.dev('a@1'))).toBe(iommuGroupGet(s.dev('b@2')));
    expect(s.k.iommu.iommus[0].singletonGroup).toBe(iommuGroupGet(s.dev('a@1')));
  });
});

describe('PCI device groups', () => {
  async function pciSetup(fns: (FakePciFunction & { behindIndex?: number })[], iommuMaxPasids = 0) {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    b.node('/pcie@30000000', { compatible: 'pci-host-ecam-generic', device_type: 'pci' });
    const s = await mockRig({ masters: [], registerDriver: false, mock: { maxPasids: iommuMaxPasids } });
    const host = await fakePciHost(s.k, b.build().byPath('/pcie@30000000')!);
    const devs: PciDevice[] = [];
    for (const f of fns) {
      // `behind` given as the index of an earlier function (a bridge) in the list.
      const behind = f.behindIndex;
      const dev = await fakePciFunction(s.k, host, behind === undefined ? f : { ...f, behind: devs[behind] });
      dev.fwspec = iommuFwspecInit(s.iommuNode, { canStall: false, pasidBits: 0, dmaCoherent: true, atsSupported: true });
      iommuFwspecAddSpecifier(dev.fwspec, [dev.rid]);
      devs.push(dev);
    }
    await s.k.run(s.k.core.registerDriver(s.mock.driver()));
    return { s, devs, groups: devs.map((d) => iommuGroupGet(d)!) };
  }

  it('puts the functions of a multi-function device without ACS in one group', async () => {
    const { groups, devs } = await pciSetup([
      { slot: 1, fn: 0, multifunction: true },
      { slot: 1, fn: 1, multifunction: true },
      { slot: 2, fn: 0, multifunction: true },
    ]);
    expect(groups[0]).toBe(groups[1]);
    expect(groups[2]).not.toBe(groups[0]);
    expect(names(groups[0].devices)).toEqual([devs[0].name, devs[1].name]);
  });

  it('separates functions that enforce ACS', async () => {
    const { groups } = await pciSetup([
      { slot: 1, fn: 0, multifunction: true, acs: { cap: FULL_ACS, ctrl: FULL_ACS } },
      { slot: 1, fn: 1, multifunction: true, acs: { cap: FULL_ACS, ctrl: FULL_ACS } },
    ]);
    expect(groups[0]).not.toBe(groups[1]);
  });

  it('keeps a function that isolates apart from a sibling that does not', async () => {
    const { groups, devs } = await pciSetup([
      { slot: 1, fn: 0, multifunction: true },
      { slot: 1, fn: 1, multifunction: true, acs: { cap: FULL_ACS, ctrl: FULL_ACS } },
      { slot: 1, fn: 2, multifunction: true, acs: { cap: FULL_ACS, ctrl: PCI_ACS_SV } },
    ]);
    expect(groups[1]).not.toBe(groups[0]);
    // Function 2 offers the controls but has not enabled them: not isolated, shares with function 0.
    expect(groups[2]).toBe(groups[0]);
    expect(pciAcsEnabled(devs[2], REQ_ACS_FLAGS)).toBe(false);
  });

  it('treats controls an ACS capability does not offer as hard-wired on', async () => {
    const { groups, devs } = await pciSetup([
      { slot: 1, fn: 0, multifunction: true, acs: { cap: 0, ctrl: 0 } },
      { slot: 1, fn: 1, multifunction: true, acs: { cap: 0, ctrl: 0 } },
    ]);
    expect(pciAcsEnabled(devs[0], REQ_ACS_FLAGS)).toBe(true);
    expect(groups[0]).not.toBe(groups[1]);
  });

  it('never groups single-function devices by ACS', async () => {
    const { groups, devs } = await pciSetup([
      { slot: 1, fn: 0, pcieType: PCI_EXP_TYPE_ENDPOINT },
      { slot: 2, fn: 0 },
    ]);
    expect(pciAcsEnabled(devs[0], REQ_ACS_FLAGS)).toBe(true);
    expect(groups[0]).not.toBe(groups[1]);
  });

  it('puts a function behind a root port without ACS in the port\'s group, and isolates one behind a port with ACS', async () => {
    const { groups, devs } = await pciSetup([
      { slot: 1, fn: 0, pcieType: PCI_EXP_TYPE_ROOT_PORT },
      { bus: 1, slot: 0, fn: 0, pcieType: PCI_EXP_TYPE_ENDPOINT, behindIndex: 0 },
      { slot: 2, fn: 0, pcieType: PCI_EXP_TYPE_ROOT_PORT, acs: { cap: FULL_ACS, ctrl: FULL_ACS } },
      { bus: 2, slot: 0, fn: 0, pcieType: PCI_EXP_TYPE_ENDPOINT, behindIndex: 2 },
    ]);
    expect(devs.map((d) => d.name)).toEqual(['0000:00:01.0', '0000:01:00.0', '0000:00:02.0', '0000:02:00.0']);
    // The port without ACS does not isolate what is below it: the endpoint joins the port's group.
    expect(groups[1]).toBe(groups[0]);
    expect(names(groups[0].devices)).toEqual(['0000:00:01.0', '0000:01:00.0']);
    // Behind the port that enforces ACS the endpoint has a group of its own.
    expect(groups[3]).not.toBe(groups[2]);
    expect(new Set(groups).size).toBe(3);
  });

  it('takes max_pasids from the PASID capability, bounded by the IOMMU', async () => {
    const { devs } = await pciSetup([{ slot: 1, fn: 0, pasidWidth: 5 }, { slot: 2, fn: 0, pasidWidth: 16 }, { slot: 3, fn: 0 }], 1 << 10);
    expect(devs.map((d) => devIommu(d)!.maxPasids)).toEqual([32, 1024, 0]);
  });
});
