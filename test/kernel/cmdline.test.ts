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

  it('rejects a bad value naming the parameter', () => {
    expect(() => parseCmdline('iommu.strict=maybe')).toThrowError(KernelError);
    expect(() => parseCmdline('iommu.strict=maybe')).toThrowError(/iommu\.strict.*"maybe"/);
    expect(() => parseCmdline('foo="unterminated')).toThrowError(/unterminated quote/);
  });
});
