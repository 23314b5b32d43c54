import { describe, expect, it } from 'vitest';
import type { Device } from '../../../bus/device.js';
import { DriverCore } from '../../../bus/driver-core.js';
import { KernelError } from '../../../bus/errno.js';
import { DtBuilder } from '../../../bus/of/dt-builder.js';
import type { DeviceTree } from '../../../bus/of/tree.js';
import { PlatformDevice, platformBus, type PlatformDriver } from '../../../bus/platform.js';
import type { TraceEvent } from '../../../hw/cpu-port.js';
import { FakePort } from './fake-port.js';

/** A tree with one node per name, each `compatible = "test,<name>"`. */
function treeOf(...names: string[]): DeviceTree {
  const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
  for (const n of names) b.node(`/${n}`, { compatible: [`test,${n}-v2`, `test,${n}`] });
  return b.build();
}

function setup(...names: string[]): { port: FakePort; core: DriverCore; dt: DeviceTree; dev: (name: string, parent?: Device) => PlatformDevice } {
  const port = new FakePort();
  const dt = treeOf(...names);
  const core = new DriverCore({ port, dt });
  const dev = (name: string, parent?: Device): PlatformDevice =>
    new PlatformDevice({ name: `/${name}`, ofNode: dt.byPath(`/${name}`)!, parent: parent ?? null });
  return { port, core, dt, dev };
}

interface Journal {
  events: string[];
}

function driver(name: string, journal: Journal, opts: Partial<PlatformDriver> & { probe?: (dev: PlatformDevice) => Promise<void> } = {}): PlatformDriver {
  return {
    name,
    bus: platformBus,
    ofMatchTable: [`test,${name}`],
    probe: async (dev) => {
      journal.events.push(`probe ${dev.name}`);
      if (opts.probe) await opts.probe(dev);
    },
    remove: (dev) => {
      journal.events.push(`remove ${dev.name}`);
    },
    shutdown: (dev) => {
      journal.events.push(`shutdown ${dev.name}`);
    },
    ...(opts.ofMatchTable ? { ofMatchTable: opts.ofMatchTable } : {}),
    ...('shutdown' in opts ? { shutdown: opts.shutdown } : {}),
  };
}

function probeEvents(events: TraceEvent[]): string[] {
  return events.flatMap((e) => (e.kind === 'probe' ? [`${e.track}:${e.result}:${e.driver ?? '-'}`] : []));
}

describe('driver core: binding', () => {
  it('binds a device to the driver whose table names one of its compatibles, recording the match', async () => {
    const { port, core, dev } = setup('uart');
    const j: Journal = { events: [] };
    const rec = port.trace.record(['probe']);
    await core.registerDriver(driver('uart', j, { ofMatchTable: ['test,other', 'test,uart'] }));
    const d = dev('uart');
    await core.addDevice(d);
    expect(d.status).toBe('bound');
    expect(d.driver?.name).toBe('uart');
    expect(d.matchedCompatible).toBe('test,uart');
    expect(j.events).toEqual(['probe /uart']);
    expect(probeEvents(rec.events)).toEqual(['/uart:bound:uart']);
  });

  it('prefers the entry matching the most specific compatible and the first registered driver', async () => {
    const { core, dev } = setup('uart');
    const j: Journal = { events: [] };
    const generic = driver('generic', j, { ofMatchTable: ['test,uart'] });
    const specific = driver('specific', j, { ofMatchTable: ['test,uart', 'test,uart-v2'] });
    await core.registerDriver(generic);
    await core.registerDriver(specific);
    const d = dev('uart');
    await core.addDevice(d);
    // Registration order picks the driver; within it, the device's own order picks the entry.
    expect(d.driver).toBe(generic);
    expect(d.matchedCompatible).toBe('test,uart');
    const { core: core2, dev: dev2 } = setup('uart');
    await core2.registerDriver(specific);
    const d2 = dev2('uart');
    await core2.addDevice(d2);
    expect(d2.matchedCompatible).toBe('test,uart-v2');
  });

  it('reports a device no driver matches as no-driver, and binds it when a matching driver registers', async () => {
    const { port, core, dev } = setup('gpio');
    const rec = port.trace.record(['probe']);
    const d = dev('gpio');
    await core.addDevice(d);
    expect(d.status).toBe('no-driver');
    await core.registerDriver(driver('gpio', { events: [] }));
    expect(d.status).toBe('bound');
    expect(probeEvents(rec.events)).toEqual(['/gpio:no-driver:-', '/gpio:bound:gpio']);
  });

  it('isolates a failing probe: the device stays unbound with the error, the others bind', async () => {
    const { port, core, dev } = setup('bad', 'good');
    const j: Journal = { events: [] };
    const rec = port.trace.record(['probe']);
    await core.registerDriver(
      driver('bad', j, {
        probe: async () => {
          throw new KernelError('EIO', 'register read back 0xdead');
        },
      }),
    );
    await core.registerDriver(driver('good', j));
    const bad = dev('bad');
    const good = dev('good');
    await core.addDevice(bad);
    await core.addDevice(good);
    expect(bad.status).toBe('failed');
    expect(bad.driver).toBeNull();
    expect(bad.probeError).toBe('EIO: register read back 0xdead');
    expect(good.status).toBe('bound');
    const failed = rec.events.find((e) => e.kind === 'probe' && e.result === 'failed');
    expect(failed).toMatchObject({ track: '/bad', driver: 'bad', error: 'EIO: register read back 0xdead' });
    expect(core.log.lines('err').map((l) => l.message)).toEqual(['probe with driver bad failed: EIO: register read back 0xdead']);
  });

  it('releases what a failed probe acquired, newest first, and what a driver holds on unbind', async () => {
    const { core, dev } = setup('a');
    const released: string[] = [];
    let fail = true;
    await core.registerDriver(
      driver('a', { events: [] }, {
        probe: async (d) => {
          d.devres.add('first', () => void released.push('first'));
          d.devres.add('second', () => void released.push('second'));
          if (fail) throw new KernelError('ENOMEM', 'out of memory');
        },
      }),
    );
    const d = dev('a');
    await core.addDevice(d);
    expect(released).toEqual(['second', 'first']);
    fail = false;
    await core.attach(d);
    expect(d.status).toBe('bound');
    expect(d.devres.labels).toEqual(['first', 'second']);
    await core.unbind(d);
    expect(released).toEqual(['second', 'first', 'second', 'first']);
    expect(d.status).toBe('unbound');
  });

  it('matches an ACPI device by HID, then by CID', async () => {
    const port = new FakePort();
    const core = new DriverCore({ port });
    const smmu = new PlatformDevice({ name: '\\_SB.SMMU', fwnode: { kind: 'acpi', path: '\\_SB.SMMU', hid: 'ARMHC503', cids: [], uid: '0' } });
    const uart = new PlatformDevice({ name: '\\_SB.COM0', fwnode: { kind: 'acpi', path: '\\_SB.COM0', hid: 'QCOM9999', cids: ['ARMH0011'], uid: null } });
    const probe = async (): Promise<void> => {};
    await core.registerDriver({ name: 'arm-smmu-v3', bus: platformBus, ofMatchTable: ['arm,smmu-v3'], acpiMatchTable: ['ARMHC503'], probe });
    await core.registerDriver({ name: 'pl011', bus: platformBus, acpiMatchTable: ['ARMH0011'], probe });
    await core.addDevice(smmu);
    await core.addDevice(uart);
    expect([smmu.driver?.name, uart.driver?.name]).toEqual(['arm-smmu-v3', 'pl011']);
    expect(smmu.matchedCompatible).toBe('ARMHC503');
  });

  it('stamps probe events with the virtual time at which the probe ended', async () => {
    const { port, core, dev } = setup('slow');
    const rec = port.trace.record(['probe']);
    await core.registerDriver(driver('slow', { events: [] }, { probe: () => port.delay(2_500) }));
    await port.run(core.addDevice(dev('slow')));
    expect(rec.events).toEqual([{ kind: 'probe', time: 2_500, track: '/slow', driver: 'slow', result: 'bound', error: null }]);
  });

  it('unbinds every device of a driver that is unregistered', async () => {
    const { core, dev } = setup('a', 'b');
    const j: Journal = { events: [] };
    const drv = driver('a', j, { ofMatchTable: ['test,a', 'test,b'] });
    await core.registerDriver(drv);
    const [a, b] = [dev('a'), dev('b')];
    await core.addDevice(a);
    await core.addDevice(b);
    await core.unregisterDriver(drv);
    expect(j.events).toEqual(['probe /a', 'probe /b', 'remove /b', 'remove /a']);
    expect([a.status, b.status]).toEqual(['unbound', 'unbound']);
    expect(core.registeredDrivers).toEqual([]);
    await expect(core.unregisterDriver(drv)).rejects.toMatchObject({ errno: 'ENOENT' });
  });

  it('keeps each kernel to itself: a device belongs to one DriverCore', async () => {
    const { port, core, dev } = setup('a');
    const d = dev('a');
    await core.addDevice(d);
    const other = new DriverCore({ port, dt: null, instance: 1 });
    await expect(other.addDevice(d)).rejects.toThrow(/already belongs to another kernel/);
    await expect(core.addDevice(dev('a'))).rejects.toMatchObject({ errno: 'EEXIST' });
  });
});

describe('driver core: deferred probe', () => {
  it('retries a deferred device when another device binds, until it binds', async () => {
    const { port, core, dev } = setup('consumer', 'provider');
    const j: Journal = { events: [] };
    let provider: Device | null = null;
    const rec = port.trace.record(['probe']);
    await core.registerDriver(
      driver('consumer', j, {
        probe: async () => {
          if (provider?.status !== 'bound') throw new KernelError('EPROBE_DEFER', 'provider not ready');
        },
      }),
    );
    await core.registerDriver(driver('provider', j));
    const c = dev('consumer');
    await core.addDevice(c);
    expect(c.status).toBe('deferred');
    expect(core.deferredProbes().map((d) => [d.device.name, d.reason])).toEqual([['/consumer', 'EPROBE_DEFER: provider not ready']]);
    provider = dev('provider');
    await core.addDevice(provider);
    expect(c.status).toBe('bound');
    expect(core.deferredProbes()).toEqual([]);
    expect(j.events).toEqual(['probe /consumer', 'probe /provider', 'probe /consumer']);
    expect(probeEvents(rec.events)).toEqual([
      '/consumer:deferred:consumer',
      '/provider:bound:provider',
      '/consumer:bound:consumer',
    ]);
    expect(core.probeOrder.map((d) => d.name)).toEqual(['/provider', '/consumer']);
  });

  it('resolves a chain of deferrals in one retry sequence', async () => {
    const { core, dev } = setup('a', 'b', 'c');
    const j: Journal = { events: [] };
    const bound = (n: string): boolean => core.findDevice(`/${n}`)?.status === 'bound';
    const needs = (other: string) => async () => {
      if (!bound(other)) throw new KernelError('EPROBE_DEFER', `${other} not ready`);
    };
    await core.registerDriver(driver('a', j, { probe: needs('b') }));
    await core.registerDriver(driver('b', j, { probe: needs('c') }));
    await core.registerDriver(driver('c', j));
    await core.addDevice(dev('a'));
    await core.addDevice(dev('b'));
    expect(core.deferredProbes().map((d) => d.device.name)).toEqual(['/a', '/b']);
    await core.addDevice(dev('c'));
    expect(core.probeOrder.map((d) => d.name)).toEqual(['/c', '/b', '/a']);
  });

  it('leaves a never-satisfied device deferred and reports it at the end of boot', async () => {
    const { port, core, dev } = setup('orphan', 'other');
    const rec = port.trace.record(['probe']);
    await core.registerDriver(
      driver('orphan', { events: [] }, {
        probe: async () => {
          throw new KernelError('EPROBE_DEFER', 'waiting for a clock nobody provides');
        },
      }),
    );
    await core.registerDriver(driver('other', { events: [] }));
    const orphan = dev('orphan');
    await core.addDevice(orphan);
    await core.addDevice(dev('other')); // a bind: the orphan is retried and defers again
    const left = await core.settle();
    expect(left.map((d) => [d.device.name, d.reason])).toEqual([['/orphan', 'EPROBE_DEFER: waiting for a clock nobody provides']]);
    expect(orphan.status).toBe('deferred');
    expect(probeEvents(rec.events).filter((e) => e.startsWith('/orphan'))).toEqual([
      '/orphan:deferred:orphan',
      '/orphan:deferred:orphan',
      '/orphan:deferred:orphan', // settle() retries once more
    ]);
    expect(core.log.lines('warn').map((l) => `${l.source}: ${l.message}`)).toEqual([
      '/orphan: deferred probe pending: EPROBE_DEFER: waiting for a clock nobody provides',
    ]);
  });

  it('does not miss a bind that happens while a deferring probe runs', async () => {
    const { port, core, dev } = setup('slow', 'fast');
    let fast: Device | null = null;
    await core.registerDriver(driver('fast', { events: [] }));
    await core.registerDriver(
      driver('slow', { events: [] }, {
        probe: async () => {
          const ready = fast?.status === 'bound';
          await port.delay(1000);
          if (!ready) throw new KernelError('EPROBE_DEFER', 'fast was not bound when checked');
        },
      }),
    );
    const slow = dev('slow');
    fast = dev('fast');
    const slowAdd = core.addDevice(slow);
    const fastAdd = core.addDevice(fast); // binds while slow's probe sleeps
    await port.run(Promise.all([slowAdd, fastAdd]));
    expect(slow.status).toBe('bound');
  });
});

describe('driver core: device links', () => {
  it('holds a consumer back until its supplier is bound, then binds it', async () => {
    const { port, core, dev } = setup('master', 'smmu');
    const j: Journal = { events: [] };
    const rec = port.trace.record(['probe']);
    await core.registerDriver(driver('master', j));
    const master = dev('master');
    const smmu = dev('smmu');
    await core.addDevice(master, { probe: false });
    await core.addDevice(smmu, { probe: false });
    const link = core.linkAdd(master, smmu);
    expect(link.state).toBe('dormant');
    await core.attach(master);
    expect(master.status).toBe('deferred');
    expect(master.probeError).toBe('supplier /smmu not ready');
    expect(j.events).toEqual([]); // the consumer's probe did not even run
    await core.registerDriver(driver('smmu', j));
    expect(j.events).toEqual(['probe /smmu', 'probe /master']);
    expect(link.state).toBe('active');
    expect(probeEvents(rec.events)).toEqual(['/master:deferred:master', '/smmu:bound:smmu', '/master:bound:master']);
  });

  it('unbinds consumers before their supplier, and removing a supplier drops its links', async () => {
    const { core, dev } = setup('m1', 'm2', 'smmu');
    const j: Journal = { events: [] };
    for (const n of ['m1', 'm2', 'smmu']) await core.registerDriver(driver(n, j));
    const [m1, m2, smmu] = [dev('m1'), dev('m2'), dev('smmu')];
    await core.addDevice(smmu);
    await core.addDevice(m1);
    await core.addDevice(m2);
    core.linkAdd(m1, smmu);
    core.linkAdd(m2, smmu);
    j.events.length = 0;
    await core.removeDevice(smmu);
    expect(j.events).toEqual(['remove /m1', 'remove /m2', 'remove /smmu']);
    expect(m1.status).toBe('unbound');
    expect(core.links.all).toEqual([]);
    expect(core.devices.map((d) => d.name)).toEqual(['/m1', '/m2']);
  });

  it('refuses a link that would close a dependency cycle', async () => {
    const { core, dev } = setup('a', 'b', 'c');
    const [a, b, c] = [dev('a'), dev('b'), dev('c')];
    for (const d of [a, b, c]) await core.addDevice(d, { probe: false });
    core.linkAdd(a, b);
    core.linkAdd(b, c);
    expect(() => core.linkAdd(c, a)).toThrow(/would close a cycle: \/a already depends on \/c/);
    expect(() => core.linkAdd(a, a)).toThrow(KernelError);
  });

  it('relaxes a firmware-inferred link to a supplier no driver matches at the end of boot', async () => {
    const { core, dev } = setup('master', 'smmu');
    await core.registerDriver(driver('master', { events: [] }));
    const master = dev('master');
    const smmu = dev('smmu');
    await core.addDevice(master, { probe: false });
    await core.addDevice(smmu);
    const link = core.linkAdd(master, smmu, { inferred: true });
    await core.attach(master);
    expect(master.status).toBe('deferred');
    const left = await core.settle();
    expect(left).toEqual([]);
    expect(link.relaxed).toBe(true);
    expect(master.status).toBe('bound');
    expect(core.log.lines('warn')[0]?.message).toBe('ignoring dependency on /smmu (no driver matches it)');
  });
});

describe('driver core: shutdown', () => {
  it('calls .shutdown in reverse probe order, children and consumers first, skipping drivers without it', async () => {
    const { core, dev, port } = setup('bus', 'child', 'master', 'smmu', 'quiet');
    const j: Journal = { events: [] };
    await core.registerDriver(driver('bus', j));
    await core.registerDriver(driver('child', j));
    await core.registerDriver(driver('master', j));
    await core.registerDriver(driver('smmu', j));
    await core.registerDriver(driver('quiet', j, { shutdown: undefined }));
    const bus = dev('bus');
    const child = dev('child', bus);
    const master = dev('master');
    const smmu = dev('smmu');
    const quiet = dev('quiet');
    // DT order puts the master before its SMMU; the link makes the SMMU probe first and shut down last.
    await core.addDevice(bus);
    await core.addDevice(child);
    await core.addDevice(master, { probe: false });
    await core.addDevice(smmu, { probe: false });
    await core.addDevice(quiet);
    core.linkAdd(master, smmu);
    await core.attach(master);
    await core.attach(smmu);
    expect(core.probeOrder.map((d) => d.name)).toEqual(['/bus', '/child', '/quiet', '/smmu', '/master']);
    j.events.length = 0;
    const rec = port.trace.record(['custom']);
    const report = await core.shutdown();
    expect(report.called).toEqual(['/master', '/smmu', '/child', '/bus']);
    expect(report.skipped).toEqual(['/quiet']);
    expect(j.events).toEqual(['shutdown /master', 'shutdown /smmu', 'shutdown /child', 'shutdown /bus']);
    expect(core.shutdownRecord).toBe(report);
    expect(rec.events.map((e) => e.track)).toEqual(['/master', '/smmu', '/child', '/bus']);
  });

  it('orders a master that deferred on its SMMU before the SMMU even without a link', async () => {
    const { core, dev } = setup('master', 'smmu');
    const j: Journal = { events: [] };
    let smmu: Device | null = null;
    await core.registerDriver(
      driver('master', j, {
        probe: async () => {
          if (smmu?.status !== 'bound') throw new KernelError('EPROBE_DEFER', 'no IOMMU yet');
        },
      }),
    );
    await core.registerDriver(driver('smmu', j));
    await core.addDevice(dev('master'));
    smmu = dev('smmu');
    await core.addDevice(smmu);
    // The retried master moved to the tail of devices_kset.
    expect(core.devices.map((d) => d.name)).toEqual(['/smmu', '/master']);
    expect((await core.shutdown()).called).toEqual(['/master', '/smmu']);
  });

  it('goes on after a failing .shutdown and blocks probing afterwards', async () => {
    const { core, dev } = setup('a', 'b', 'late');
    await core.registerDriver(driver('a', { events: [] }));
    await core.registerDriver(
      driver('b', { events: [] }, {
        shutdown: () => {
          throw new KernelError('ETIMEDOUT', 'CR0ACK never came');
        },
      }),
    );
    await core.addDevice(dev('a'));
    await core.addDevice(dev('b'));
    const report = await core.shutdown();
    expect(report.called).toEqual(['/b', '/a']);
    expect(report.errors).toEqual([{ device: '/b', error: 'ETIMEDOUT: CR0ACK never came' }]);
    await core.registerDriver(driver('late', { events: [] }));
    const late = dev('late');
    await core.addDevice(late);
    expect(late.status).toBe('deferred');
    expect(late.probeError).toBe('probing blocked: the kernel is shutting down');
  });
});
