/**
 * The layer rules of DESIGN.md. The kernel side (bus, mm, core, drivers, kernel) reaches the machine
 * only through hw/cpu-port.ts; the machine (hw) imports nothing outside hw.
 */
const KERNEL = '^(bus|mm|core|drivers|kernel)/';
module.exports = {
  forbidden: [
    {
      name: 'hw-imports-only-hw',
      comment: 'The machine knows nothing of any kernel: hw/ imports only hw/ (and node/npm modules).',
      severity: 'error',
      from: { path: '^hw/' },
      to: { path: '^(bus|mm|core|drivers|kernel|vmm|scenarios|cli|test|bench)/' },
    },
    {
      name: 'kernel-reaches-hw-only-through-cpu-port',
      comment: 'Drivers reach the SMMU only through MMIO, memory and interrupts: hw/cpu-port.ts is the one hw module the kernel may import.',
      severity: 'error',
      from: { path: KERNEL },
      to: { path: '^hw/', pathNot: '^hw/cpu-port\\.ts$|^hw/trace\\.ts$' },
    },
    {
      name: 'kernel-side-trace-is-type-only',
      comment: 'hw/trace.ts is reachable from the kernel only as types re-exported by cpu-port.',
      severity: 'error',
      from: { path: KERNEL },
      to: { path: '^hw/trace\\.ts$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'bus-is-the-bottom-kernel-layer',
      severity: 'error',
      from: { path: '^bus/' },
      to: { path: '^(mm|core|drivers|kernel|vmm|scenarios|cli)/' },
    },
    {
      name: 'mm-below-core',
      severity: 'error',
      from: { path: '^mm/' },
      to: { path: '^(core|drivers|kernel|vmm|scenarios|cli)/' },
    },
    {
      name: 'core-below-drivers',
      severity: 'error',
      from: { path: '^core/' },
      to: { path: '^(drivers|kernel|vmm|scenarios|cli)/' },
    },
    {
      name: 'drivers-below-kernel',
      severity: 'error',
      from: { path: '^drivers/' },
      to: { path: '^(kernel|vmm|scenarios|cli)/' },
    },
    {
      name: 'kernel-below-lab-bench',
      severity: 'error',
      from: { path: '^kernel/' },
      to: { path: '^(vmm|scenarios|cli)/' },
    },
    {
      name: 'vmm-is-host-user-space',
      comment:
        'The VMM drives the host kernel only through its iommufd-style API (core/iommufd.ts), writes the guest firmware with bus/, and implements hw/cpu-port.ts: no SMMU or other model, no driver, no mm, no kernel internals.',
      severity: 'error',
      from: { path: '^vmm/' },
      to: { path: '^(hw/|mm/|drivers/|kernel/|scenarios/|cli/|core/)', pathNot: '^hw/cpu-port\\.ts$|^hw/trace\\.ts$|^core/iommufd\\.ts$' },
    },
    {
      name: 'vmm-sees-hw-trace-as-types-only',
      severity: 'error',
      from: { path: '^vmm/' },
      to: { path: '^hw/trace\\.ts$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // p-queue's package exports have no "import" condition list dependency-cruiser knows by default.
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
    exclude: { path: '^(dist|node_modules)/' },
  },
};
