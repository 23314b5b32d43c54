import { describe, expect, it } from 'vitest';
import { iommuFwspecAddSpecifier, iommuFwspecInit } from '../../bus/iommu-fwspec.js';
import { PlatformDevice } from '../../bus/platform.js';
import { dmaCookieOf } from '../../core/dma-iommu.js';
import { devIommu } from '../../core/iommu-device.js';
import {
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_HWPT_ALLOC_PASID,
  iommuIovaToPhys,
} from '../../core/iommu-domain.js';
import { iommuGetDomainForDev, iommuGroupClaimDmaOwner } from '../../core/iommu-attach.js';
import { iommuGroupGet } from '../../core/iommu-group.js';
import {
  iommuBusNotify,
  iommuDeviceUnregister,
  iommuDmaConfigure,
  iommuGroupShowType,
  iommuGroupStoreType,
  iommuSubsystemOf,
  IommuSubsystem,
} from '../../core/iommu.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../core/io-pgtable.js';
import { MockDomain } from './mock-iommu.js';
import { IOMMU_PATH, mockRig } from './mock-rig.js';
import { expectErrno } from '../lib/errno.js';

const A = 'dma@10000000';
const B = 'dma@10001000';

describe('registration and device probe', () => {
  it('probes every master firmware puts behind the IOMMU, translating its specifiers', async () => {
    const s = await mockRig({
      iommuCells: 2,
      masters: [{ name: A, ids: [[0x10, 0x3]] }, { name: B, ids: [[0x20, 0]] }, { name: 'uart@9100000' }],
    });
    expect(s.iommuDev.status).toBe('bound');
    const a = s.dev(A);
    // arm-smmu style packing: SID | MASK << 16, from the raw 2-cell specifier.
    expect(a.fwspec!.ids).toEqual([0x10 | (0x3 << 16)]);
    expect(s.mock.callsOf('xlate').map((c) => c.args)).toEqual([
      [0x10, 0x3],
      [0x20, 0],
    ]);
    const ga = iommuGroupGet(a)!;
    const gb = iommuGroupGet(s.dev(B))!;
    expect(ga).not.toBe(gb);
    expect(ga.devices).toEqual([a]);
    expect(ga.domain).toBe(ga.defaultDomain);
    expect(s.mock.rid.get(a)).toBe(ga.defaultDomain);
    expect(iommuGetDomainForDev(a)).toBe(ga.defaultDomain);
    expect(devIommu(s.dev('uart@9100000'))).toBeNull();
    // probe, then the group's default domain, then probe_finalize.
    expect(s.mock.calls.filter((c) => c.op !== 'xlate' && (c as { dev?: string }).dev === a.name).map((c) => c.op)).toEqual(['probe', 'attach', 'finalize']);
    expect(s.k.core.log.lines().map((l) => l.message)).toContain('Adding to iommu group 0');
  });

  it('a probe_device error other than ENODEV fails the registration and undoes it', async () => {
    const s = await mockRig({ masters: [{ name: A, ids: [[1]] }], registerDriver: false });
    s.mock.failProbe = () => 'EINVAL';
    await s.k.run(s.k.core.registerDriver(s.mock.driver()));
    expect(s.iommuDev.status).toBe('failed');
    expect(s.iommuDev.probeError).toMatch(/EINVAL/);
    expect(s.k.iommu.iommus).toEqual([]);
    expect(devIommu(s.dev(A))).toBeNull();
  });

  it('defers a driver probe while the IOMMU its firmware names is not registered, then binds', async () => {
    const s = await mockRig({
      masters: [{ name: A, ids: [[1]] }, { name: 'plain@10002000' }],
      registerDriver: false,
      masterDriver: true,
      iommuLinks: false,
    });
    const a = s.dev(A);
    expect(a.status).toBe('deferred');
    expect(a.probeError).toMatch(/EPROBE_DEFER.*iommu@9000000 is not registered/);
    expect(s.dev('plain@10002000').status).toBe('bound');
    await s.k.run(s.k.core.registerDriver(s.mock.driver()));
    expect(a.status).toBe('bound');
    const g = iommuGroupGet(a)!;
    // The bound driver counts as a user of the default domain.
    expect(g.ownerCnt).toBe(1);
    await expectErrno(iommuGroupClaimDmaOwner(g, 'vfio'), 'EPERM');
  });

  it('a device the IOMMU driver refuses gets direct DMA and its driver still binds', async () => {
    const s = await mockRig({ masters: [], masterDriver: true });
    s.mock.failProbe = () => 'EINVAL';
    const dev = new PlatformDevice({ name: '/late@1' });
    dev.fwspec = iommuFwspecInit(s.iommuNode, { canStall: false, pasidBits: 0, dmaCoherent: false, atsSupported: false });
    iommuFwspecAddSpecifier(dev.fwspec, [9]);
    await s.k.run(s.k.core.addDevice(dev, { probe: false }));
    await s.k.run(iommuDmaConfigure(dev));
    expect(iommuGroupGet(dev)).toBeNull();
    expect(devIommu(dev)).toBeNull();
    expect(s.k.core.log.lines('warn').map((l) => l.message).join('\n')).toMatch(/Adding to IOMMU failed: EINVAL/);
  });

  it('probes a device added after registration (bus notifier) and releases it on removal', async () => {
    const s = await mockRig({ masters: [] });
    const dev = new PlatformDevice({ name: '/late@2' });
    dev.fwspec = iommuFwspecInit(s.iommuNode, { canStall: false, pasidBits: 0, dmaCoherent: false, atsSupported: false });
    iommuFwspecAddSpecifier(dev.fwspec, [3]);
    await s.k.run(s.k.core.addDevice(dev, { probe: false }));
    await s.k.run(iommuBusNotify(dev, 'add'));
    const g = iommuGroupGet(dev)!;
    const domain = g.defaultDomain as MockDomain;
    expect(s.k.iommu.groups.has(g)).toBe(true);
    await s.k.run(iommuBusNotify(dev, 'removed'));
    expect(dev.iommu).toBeNull();
    expect(s.k.iommu.groups.has(g)).toBe(false);
    expect(s.mock.callsOf('release').map((c) => c.dev)).toEqual(['/late@2']);
    expect(s.mock.callsOf('free').map((c) => c.domain)).toEqual([domain.label]);
    expect(domain.isFreed).toBe(true);
  });

  it('unregistering the IOMMU releases its devices and their groups', async () => {
    const s = await mockRig({ masters: [{ name: A, ids: [[1]] }, { name: B, ids: [[2]] }] });
    const iommu = s.k.iommu.iommus[0];
    await s.k.run(iommuDeviceUnregister(iommu));
    expect(s.k.iommu.iommus).toEqual([]);
    expect(s.k.iommu.groups.size).toBe(0);
    expect(devIommu(s.dev(A))).toBeNull();
    expect(s.mock.callsOf('release')).toHaveLength(2);
  });

  it('gives each kernel its own iommu core', async () => {
    const s = await mockRig({ masters: [] });
    expect(iommuSubsystemOf(s.k.core)).toBe(s.k.iommu);
    const other = await mockRig({ masters: [] });
    expect(iommuSubsystemOf(other.k.core)).not.toBe(s.k.iommu);
    await expectErrno(() => new IommuSubsystem({ core: s.k.core, pageAllocator: s.k.alloc, passthrough: false, strict: false }), 'EEXIST');
  });
});

describe('default domain selection', () => {
  async function defaultOf(opts: Parameters<typeof mockRig>[0]) {
    const s = await mockRig({ masters: [{ name: A, ids: [[1]] }], ...opts });
    const g = iommuGroupGet(s.dev(A))!;
    return { s, g, d: g.defaultDomain! };
  }

  it('is DMA-FQ (lazy) by default, with a flush queue', async () => {
    const { s, g, d } = await defaultOf({});
    expect(d.type).toBe(IOMMU_DOMAIN_DMA_FQ);
    expect(dmaCookieOf(d)!.fq).not.toBeNull();
    expect(iommuGroupShowType(g)).toBe('DMA-FQ');
    expect(s.k.core.log.lines().map((l) => l.message)).toContain('DMA domain TLB invalidation policy: lazy mode');
  });

  it('is DMA with iommu.strict', async () => {
    const { d } = await defaultOf({ kernel: { strict: true } });
    expect(d.type).toBe(IOMMU_DOMAIN_DMA);
    expect(dmaCookieOf(d)!.fq).toBeNull();
  });

  it('is the driver\'s identity domain with iommu.passthrough', async () => {
    const { s, d } = await defaultOf({ kernel: { passthrough: true } });
    expect(d).toBe(s.mock.identityDomain);
    expect(d.type).toBe(IOMMU_DOMAIN_IDENTITY);
    expect(s.mock.rid.get(s.dev(A))).toBe(s.mock.identityDomain);
  });

  it('falls back to DMA when the driver has no identity domain', async () => {
    const { s, d } = await defaultOf({ kernel: { passthrough: true }, mock: { identity: false } });
    expect(d.type).toBe(IOMMU_DOMAIN_DMA);
    expect(s.k.core.log.lines('warn').map((l) => l.message).join('\n')).toMatch(/Falling back to IOMMU_DOMAIN_DMA/);
  });

  it('downgrades DMA-FQ to DMA when the IOMMU cannot defer flushes', async () => {
    const { d } = await defaultOf({ mock: { caps: ['CACHE_COHERENCY'] } });
    expect(d.type).toBe(IOMMU_DOMAIN_DMA);
    expect(dmaCookieOf(d)!.fq).toBeNull();
  });

  it('follows the driver\'s def_domain_type over the command line', async () => {
    expect((await defaultOf({ mock: { defDomainType: () => IOMMU_DOMAIN_IDENTITY } })).d.type).toBe(IOMMU_DOMAIN_IDENTITY);
    expect((await defaultOf({ kernel: { passthrough: true }, mock: { defDomainType: () => IOMMU_DOMAIN_DMA } })).d.type).toBe(IOMMU_DOMAIN_DMA);
  });

  it('lets IDENTITY win when the devices of a group disagree, and logs the driver error', async () => {
    const s = await mockRig({
      masters: [{ name: A, ids: [[7]] }, { name: B, ids: [[7]] }],
      mock: { defDomainType: (dev) => (dev.name === `/${B}` ? IOMMU_DOMAIN_IDENTITY : IOMMU_DOMAIN_DMA) },
    });
    const g = iommuGroupGet(s.dev(A))!;
    expect(g.devices).toHaveLength(2);
    expect(g.defaultDomain!.type).toBe(IOMMU_DOMAIN_IDENTITY);
    expect(s.k.core.log.lines('err').map((l) => l.message).join('\n')).toMatch(/conflicting def_domain_type, Translated and Passthrough, for devices in group/);
  });

  it('asks for a PASID-capable paging domain when the device has PASIDs, and retries without', async () => {
    const withPasid = await defaultOf({ mock: { maxPasids: 1 << 8 }, masters: [{ name: A, ids: [[1]], props: { 'pasid-num-bits': 5 } }] });
    expect(devIommu(withPasid.s.dev(A))!.maxPasids).toBe(32);
    expect(withPasid.s.mock.callsOf('alloc').map((c) => c.flags)).toEqual([IOMMU_HWPT_ALLOC_PASID]);
    const refused = await defaultOf({ mock: { maxPasids: 1 << 8, pasidDomains: false }, masters: [{ name: A, ids: [[1]], props: { 'pasid-num-bits': 5 } }] });
    expect(refused.s.mock.callsOf('alloc').map((c) => c.flags)).toEqual([0]);
    expect(refused.d.type).toBe(IOMMU_DOMAIN_DMA_FQ);
    const none = await defaultOf({ masters: [{ name: A, ids: [[1]], props: { 'pasid-num-bits': 5 } }] });
    // The IOMMU supports no PASIDs: min(device, IOMMU) = 0.
    expect(devIommu(none.s.dev(A))!.maxPasids).toBe(0);
    expect(none.s.mock.callsOf('alloc').map((c) => c.flags)).toEqual([0]);
  });

  it('iommu_set_dma_strict turns the lazy default into strict', async () => {
    const s = await mockRig({ masters: [], registerDriver: false });
    s.k.iommu.iommuSetDmaStrict();
    expect(s.k.iommu.defaultDomainType).toBe(IOMMU_DOMAIN_DMA);
  });

  it('identity-maps firmware DIRECT regions before the first attach, and the device then refuses blocking', async () => {
    const s = await mockRig({
      masters: [{ name: A, ids: [[1]] }],
      kernel: { strict: true },
      mock: {
        resvRegions: () => [
          { start: 0x4800_0000, length: 0x3000, prot: IOMMU_READ | IOMMU_WRITE, type: 'DIRECT' },
          { start: 0x4900_0000, length: 0x1000, prot: IOMMU_READ, type: 'DIRECT_RELAXABLE' },
        ],
      },
    });
    const a = s.dev(A);
    const g = iommuGroupGet(a)!;
    const d = g.defaultDomain!;
    expect(iommuIovaToPhys(d, 0x4800_2abc)).toBe(0x4800_2abc);
    expect(iommuIovaToPhys(d, 0x4900_0010)).toBe(0x4900_0010);
    expect(iommuIovaToPhys(d, 0x4800_3000)).toBe(0);
    const ops = s.mock.calls.filter((c) => c.op === 'map' || c.op === 'attach').map((c) => c.op);
    expect(ops.indexOf('map')).toBeLessThan(ops.indexOf('attach'));
    expect(devIommu(a)!.requireDirect).toBe(true);
    await expectErrno(iommuGroupClaimDmaOwner(g, 'vfio'), 'EINVAL', /EINVAL.*1:1 mapping/);
    expect(g.domain).toBe(d);
    expect(g.owner).toBeNull();
  });
});

describe('direct mappings and their IOTLB flush (v6.1: after the attach)', () => {
  const regions = () => [
    { start: 0x4800_0000, length: 0x2000, prot: IOMMU_READ | IOMMU_WRITE, type: 'DIRECT' as const },
    { start: 0x0800_0000, length: 0x10_0000, prot: IOMMU_WRITE, type: 'SW_MSI' as const },
  ];
  const seq = (s: Awaited<ReturnType<typeof mockRig>>, dev: string): string[] =>
    s.mock.calls.flatMap((c) => {
      if (c.op === 'attach' && c.dev === dev) return [`attach ${c.domain}`];
      if (c.op === 'map') return [`map ${c.domain} 0x${c.iova.toString(16)}`];
      if (c.op === 'flush-all') return [`flush-all ${c.domain}`];
      return [];
    });

  it('a DMA default domain: the DIRECT region is mapped before the attach and the IOTLB flushed once after it', async () => {
    const s = await mockRig({ masters: [{ name: A, ids: [[1]] }], kernel: { strict: true }, mock: { resvRegions: regions } });
    const d = iommuGroupGet(s.dev(A))!.defaultDomain as MockDomain;
    expect(seq(s, s.dev(A).name)).toEqual([`map ${d.label} 0x48000000`, `attach ${d.label}`, `flush-all ${d.label}`]);
  });

  it('a device added later (its own probe) is flushed after its attach too, even with nothing to map', async () => {
    const s = await mockRig({ masters: [], kernel: { strict: true }, mock: { resvRegions: () => [regions()[1]] } });
    const dev = new PlatformDevice({ name: '/late@3' });
    dev.fwspec = iommuFwspecInit(s.iommuNode, { canStall: false, pasidBits: 0, dmaCoherent: false, atsSupported: false });
    iommuFwspecAddSpecifier(dev.fwspec, [1]);
    await s.k.run(s.k.core.addDevice(dev, { probe: false }));
    await s.k.run(iommuBusNotify(dev, 'add'));
    const d = iommuGroupGet(dev)!.defaultDomain as MockDomain;
    expect(seq(s, '/late@3')).toEqual([`attach ${d.label}`, `flush-all ${d.label}`]);
  });

  it('no flush without reserved regions (v6.6: only when the list is not empty), nor for an identity default domain', async () => {
    const none = await mockRig({ masters: [{ name: A, ids: [[1]] }], kernel: { strict: true } });
    expect(none.mock.callsOf('flush-all')).toEqual([]);
    const ident = await mockRig({ masters: [{ name: A, ids: [[1]] }], kernel: { passthrough: true }, mock: { resvRegions: regions } });
    expect(iommuGroupGet(ident.dev(A))!.defaultDomain!.type).toBe(IOMMU_DOMAIN_IDENTITY);
    expect(ident.mock.callsOf('flush-all')).toEqual([]);
  });
});

describe('changing the default domain type (sysfs)', () => {
  it('turns DMA into DMA-FQ live, and refuses other changes while a driver is bound', async () => {
    const s = await mockRig({ masters: [{ name: A, ids: [[1]] }], kernel: { strict: true }, masterDriver: true });
    const g = iommuGroupGet(s.dev(A))!;
    const d = g.defaultDomain!;
    await s.k.run(iommuGroupStoreType(g, 'DMA-FQ'));
    expect(g.defaultDomain).toBe(d);
    expect(d.type).toBe(IOMMU_DOMAIN_DMA_FQ);
    expect(dmaCookieOf(d)!.fq).not.toBeNull();
    await expectErrno(iommuGroupStoreType(g, 'identity'), 'EPERM');
    await expectErrno(iommuGroupStoreType(g, 'bogus'), 'EINVAL');
  });

  it('replaces the default domain when no driver is bound, freeing the old one', async () => {
    const s = await mockRig({ masters: [{ name: A, ids: [[1]] }] });
    const a = s.dev(A);
    const g = iommuGroupGet(a)!;
    const old = g.defaultDomain as MockDomain;
    await s.k.run(iommuGroupStoreType(g, 'identity'));
    expect(g.defaultDomain).toBe(s.mock.identityDomain);
    expect(g.domain).toBe(s.mock.identityDomain);
    expect(s.mock.rid.get(a)).toBe(s.mock.identityDomain);
    expect(old.isFreed).toBe(true);
    expect(devIommu(a)!.dmaIommu).toBe(false);
    expect(iommuGroupShowType(g)).toBe('identity');
  });
});

describe('the iommu core is found from the device path', () => {
  it('names the IOMMU node in EPROBE_DEFER', async () => {
    const s = await mockRig({ masters: [{ name: A, ids: [[1]] }], registerDriver: false });
    await expect(iommuDmaConfigure(s.dev(A))).rejects.toThrow(new RegExp(`EPROBE_DEFER.*${IOMMU_PATH}`));
  });
});
