import { describe, expect, it } from 'vitest';
import { DEFAULT_PARAMS, parseCmdline } from '../../kernel/cmdline.js';
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
