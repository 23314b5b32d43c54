/** Boot a test kernel whose DT has a mock IOMMU and platform masters behind it. */
import type { Device } from '../../bus/device.js';
import { DtBuilder, reg, type DtProps } from '../../bus/of/dt-builder.js';
import type { DtNode } from '../../bus/of/tree.js';
import { ofPlatformPopulate, platformBus, type PlatformDevice, type PlatformDriver } from '../../bus/platform.js';
import { iommuDmaConfigure } from '../../core/iommu.js';
import { MOCK_IOMMU_COMPATIBLE, MockIommu, type MockIommuOptions } from './mock-iommu.js';
import { testKernel, type TestKernel, type TestKernelOptions } from './kernel-rig.js';

export const MASTER_COMPATIBLE = 'iommu-sim,test-master';

export interface MasterSpec {
  /** Node name, e.g. "dma@10000000". */
  name: string;
  /** `iommus` specifier cells; absent: the master has no IOMMU. */
  ids?: number[][];
  props?: DtProps;
}

export interface MockRigOptions {
  masters?: MasterSpec[];
  kernel?: Omit<TestKernelOptions, 'dt'>;
  mock?: MockIommuOptions;
  /** Cells per `iommus` specifier (default 1). */
  iommuCells?: number;
  /** Register the mock's driver before population (default true). */
  registerDriver?: boolean;
  /** Register a driver for the masters whose probe runs the iommu dma_configure hook. */
  masterDriver?: boolean;
  /** Link masters to the IOMMU as fw_devlink does (default true). */
  iommuLinks?: boolean;
}

export interface MockRig {
  k: TestKernel;
  mock: MockIommu;
  iommuNode: DtNode;
  iommuDev: PlatformDevice;
  dev(name: string): PlatformDevice;
  masterDriver: PlatformDriver;
}

export const IOMMU_PATH = '/iommu@9000000';

export async function mockRig(opts: MockRigOptions = {}): Promise<MockRig> {
  const b = new DtBuilder({ compatible: 'iommu-sim,test', '#address-cells': 2, '#size-cells': 2 });
  const iommu = b.node(IOMMU_PATH, { compatible: MOCK_IOMMU_COMPATIBLE, '#iommu-cells': opts.iommuCells ?? 1, reg: reg([0x900_0000, 0x1_0000]) });
  for (const m of opts.masters ?? []) {
    const props: DtProps = { compatible: MASTER_COMPATIBLE, ...m.props };
    if (m.ids) props.iommus = m.ids.flatMap((cells) => [iommu, ...cells]);
    b.node(`/${m.name}`, props);
  }
  const tree = b.build();
  const k = testKernel({ ...opts.kernel, dt: tree });
  const mock = new MockIommu(k.port, k.alloc, opts.mock);
  const masterDriver: PlatformDriver = {
    name: 'test-master',
    bus: platformBus,
    ofMatchTable: [MASTER_COMPATIBLE],
    probe: (dev) => iommuDmaConfigure(dev),
  };
  if (opts.registerDriver ?? true) await k.core.registerDriver(mock.driver());
  if (opts.masterDriver) await k.core.registerDriver(masterDriver);
  await k.run(ofPlatformPopulate(k.core, { iommuLinks: opts.iommuLinks ?? true }));
  const dev = (name: string): PlatformDevice => {
    const d = k.core.findDevice(name.startsWith('/') ? name : `/${name}`);
    if (!d) throw new Error(`no device ${name}`);
    return d as PlatformDevice;
  };
  return { k, mock, iommuNode: tree.byPath(IOMMU_PATH)!, iommuDev: dev(IOMMU_PATH), dev, masterDriver };
}

export function names(devs: readonly Device[]): string[] {
  return devs.map((d) => d.name);
}
