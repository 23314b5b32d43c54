import { describe, expect, it } from 'vitest';
import { DEFAULT_PARAMS, misspeltParamHints, parseCmdline, suggestParam, unknownParamsLine } from '../../kernel/cmdline.js';
import { KernelError } from '../../bus/errno.js';

describe('kernel command line', () => {
  it('gives the arm64 defaults for an empty line', () => {
    const p = parseCmdline('');
    expect(p.params).toEqual(DEFAULT_PARAMS);
    expect(p.unknown).toEqual([]);
  });

  it('parses the IOMMU parameters with kstrtobool spellings', () => {
    const p = parseCmdline('iommu.passthrough=1 iommu.strict=on arm-smmu.disable_bypass=n arm-smmu-v3.disable_bypass=0');
    expect(p.params['iommu.passthrough']).toBe(true);
    expect(p.params['iommu.strict']).toBe(true);
    expect(p.params['arm-smmu.disable_bypass']).toBe(false);
    expect(p.params['arm-smmu-v3.disable_bypass']).toBe(false);
    expect(p.given).toEqual(['iommu.passthrough', 'iommu.strict', 'arm-smmu.disable_bypass', 'arm-smmu-v3.disable_bypass']);
  });

  it('treats - and _ alike in parameter names but not module names', () => {
    expect(parseCmdline('arm-smmu.disable-bypass=0').params['arm-smmu.disable_bypass']).toBe(false);
    expect(parseCmdline('arm_smmu.disable_bypass=0').unknown).toEqual(['arm_smmu.disable_bypass=0']);
  });

  it('keeps unknown parameters and quoted values', () => {
    const p = parseCmdline('console=ttyAMA0 foo="a b" iommu.strict=0');
    expect(p.unknown).toEqual(['console=ttyAMA0', 'foo=a b']);
    expect(p.params['iommu.strict']).toBe(false);
  });

  it('parses the shutdown policies the kexec experiments compare', () => {
    const p = parseCmdline('arm-smmu-v3.shutdown_policy=gbpa-abort arm-smmu.shutdown_policy=abort-all arm-smmu.shutdown_fault_irqs=1');
    expect(p.params['arm-smmu-v3.shutdown_policy']).toBe('gbpa-abort');
    expect(p.params['arm-smmu.shutdown_policy']).toBe('abort-all');
    expect(p.params['arm-smmu.shutdown_fault_irqs']).toBe(true);
    expect(() => parseCmdline('arm-smmu-v3.shutdown_policy=explode')).toThrowError(/expected one of disable, gbpa-abort, ste-abort, got "explode"/);
    expect(() => parseCmdline('arm-smmu.shutdown_policy')).toThrowError(/got nothing/);
  });

  it('rejects a bad value naming the parameter', () => {
    expect(() => parseCmdline('iommu.strict=maybe')).toThrowError(KernelError);
    expect(() => parseCmdline('iommu.strict=maybe')).toThrowError(/iommu\.strict.*"maybe"/);
    expect(() => parseCmdline('foo="unterminated')).toThrowError(/unterminated quote/);
  });
});

describe('crashkernel= and unknown parameters', () => {
  it('parses crashkernel=SIZE[@OFFSET] with memparse suffixes', () => {
    expect(parseCmdline('crashkernel=256M').params.crashkernel).toEqual({ size: 256 * 2 ** 20, offset: null });
    expect(parseCmdline('crashkernel=64M@0x60000000').params.crashkernel).toEqual({ size: 64 * 2 ** 20, offset: 0x6000_0000 });
    expect(parseCmdline('crashkernel=1G@2G').params.crashkernel).toEqual({ size: 2 ** 30, offset: 2 ** 31 });
    expect(parseCmdline('').params.crashkernel).toBeNull();
  });

  it('rejects crashkernel values it cannot honour, naming the parameter', () => {
    for (const bad of ['crashkernel', 'crashkernel=', 'crashkernel=lots', 'crashkernel=0', 'crashkernel=1M@2M@3M', 'crashkernel=512M-2G:64M', 'crashkernel=256M,high']) {
      expect(() => parseCmdline(bad), bad).toThrow(/crashkernel/);
    }
  });

  it('prints the kernel\'s one line for unknown parameters, and a hint for likely typos', () => {
    const p = parseCmdline('arm-smmu-v3.shutdown_polcy=gbpa-abort quiet iommu.strict=1 arm-smmu.disable-bypass=0');
    // Module parameter names treat - and _ alike: disable-bypass is the known one.
    expect(p.unknown).toEqual(['arm-smmu-v3.shutdown_polcy=gbpa-abort', 'quiet']);
    expect(unknownParamsLine(p.unknown)).toBe(
      'Unknown kernel command line parameters "arm-smmu-v3.shutdown_polcy=gbpa-abort quiet", will be passed to user space.',
    );
    expect(misspeltParamHints(p.unknown)).toEqual(['"arm-smmu-v3.shutdown_polcy=gbpa-abort": did you mean arm-smmu-v3.shutdown_policy?']);
    expect(suggestParam('crashkernal=64M')).toBe('crashkernel');
    expect(suggestParam('quiet')).toBeNull();
    expect(unknownParamsLine([])).toBeNull();
  });
});
