/**
 * The package as another project gets it: `npm pack` builds the tarball (runtime code, type
 * declarations, README; no tests or benchmarks), a fresh project installs it with npm (packages
 * from the local npm cache when it has them, else the registry), and the README's "Use it from your
 * project" example type-checks under tsc and passes under vitest there. Deep imports of internals
 * are refused by the package's `exports`.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const execFileAsync = promisify(execFile);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function version(pkg: string): string {
  return (JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The first ```ts block after the README heading. */
function readmeExample(heading: string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const at = readme.indexOf(`## ${heading}`);
  expect(at).toBeGreaterThan(0);
  const m = /```ts\n([\s\S]*?)```/.exec(readme.slice(at));
  expect(m).not.toBeNull();
  return m![1];
}

/** Run a command without blocking the test worker (npm install and the nested vitest take a while). */
async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const env = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', DEBUG: '', NO_COLOR: '1', FORCE_COLOR: '0' };
  try {
    const { stdout } = await execFileAsync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
    return stdout.replace(/\x1b\[[0-9;]*m/g, '');
  } catch (e) {
    const x = e as { code?: unknown; stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed (${String(x.code)}):\n${x.stdout ?? ''}\n${x.stderr ?? ''}`);
  }
}

describe('the packed tarball in a fresh project', () => {
  it('holds runtime code, types and README only; the README example passes under tsc and vitest', { timeout: 300_000 }, async () => {
    const work = mkdtempSync(join(tmpdir(), 'iommu-sim-consumer-'));
    // Pack a copy of the checkout's tracked files (as a fresh clone has them), so the build the
    // package runs does not rewrite the dist/ other tests are using.
    const checkout = join(work, 'checkout');
    for (const f of execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8' }).split('\0').filter((f) => f && existsSync(join(root, f)))) {
      mkdirSync(dirname(join(checkout, f)), { recursive: true });
      copyFileSync(join(root, f), join(checkout, f));
    }
    symlinkSync(join(root, 'node_modules'), join(checkout, 'node_modules'));
    const packed = JSON.parse(await run(npm, ['pack', '--json', '--pack-destination', work], checkout)) as { filename: string; files: { path: string }[] }[];
    const files = packed[0].files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(['README.md', 'package.json', 'bin/iommu-sim', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/iommu-sim.js', 'dist/cli/run-worker.js']));
    expect(files.filter((f) => /^(test|bench|dist\/bench|dist\/test)\//.test(f) || /\.ts$/.test(f.replace(/\.d\.ts$/, '')))).toEqual([]);
    const tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!);

    const project = join(work, 'project');
    mkdirSync(join(project, 'test'), { recursive: true });
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({
        name: 'my-smmu-tests',
        private: true,
        type: 'module',
        devDependencies: {
          'iommu-sim': `file:${tarball}`,
          vitest: version('vitest'),
          typescript: version('typescript'),
          '@types/node': version('@types/node'),
        },
      }),
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'], skipLibCheck: false }, include: ['test'] }),
    );
    writeFileSync(join(project, 'test', 'smmu.test.ts'), readmeExample('Use it from your project'));
    await run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund'], project);
    await run(process.execPath, [join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], project);
    const out = await run(process.execPath, [join(project, 'node_modules', 'vitest', 'vitest.mjs'), 'run'], project);
    expect(out).toMatch(/Tests\s+3 passed/);
    // Internals stay internal: a deep import is refused by the package's exports.
    const deep = spawnSync(process.execPath, ['--input-type=module', '-e', "await import('iommu-sim/dist/hw/machine.js')"], { cwd: project, encoding: 'utf8' });
    expect(deep.status).not.toBe(0);
    expect(deep.stderr).toContain('ERR_PACKAGE_PATH_NOT_EXPORTED');
    // The installed CLI runs the project's own TypeScript scenario module.
    writeFileSync(
      join(project, 'boot.scenario.ts'),
      [
        "import { boot, Checks, virtMachine, type Scenario } from 'iommu-sim';",
        'export const scenario: Scenario = {',
        "  name: 'my-boot',",
        "  shows: 'virt boots from a project of its own',",
        '  async run({ seed }) {',
        '    const kernel = await boot(virtMachine({ seed }));',
        '    const c = new Checks();',
        "    c.equal('nothing deferred', kernel.deferredAtBoot.length, 0);",
        '    return c.result({});',
        '  },',
        '};',
        '',
      ].join('\n'),
    );
    const cliOut = await run(process.execPath, [join(project, 'node_modules', 'iommu-sim', 'bin', 'iommu-sim'), 'run', '--module', 'boot.scenario.ts'], project);
    expect(cliOut).toContain('1 passed, 0 failed (seed 1)');
    // The CLI ships too, and knows its version.
    const v = execFileSync(process.execPath, [join(project, 'node_modules', 'iommu-sim', 'bin', 'iommu-sim'), '--version'], { encoding: 'utf8' });
    expect(v.trim()).toBe(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version);
  });
});
