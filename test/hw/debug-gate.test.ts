/**
 * The debug gate the MMIO map and the scheduler check per access and per step: it answers as the
 * logger's own `enabled` does, through `createDebug.enable()` and `disable()` at run time.
 */
import createDebug from 'debug';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DebugGate } from '../../hw/debug-gate.js';

let saved = '';
beforeEach(() => {
  saved = createDebug.disable();
});
afterEach(() => {
  createDebug.enable(saved);
});

describe('DebugGate', () => {
  it('follows enable() and disable() of its namespace, and ignores other namespaces', () => {
    const log = createDebug('iommu:hw:gate-test');
    const gate = new DebugGate(log);
    expect(gate.enabled).toBe(false);
    createDebug.enable('iommu:hw:*');
    expect(gate.enabled).toBe(true);
    expect(gate.enabled).toBe(log.enabled);
    createDebug.enable('iommu:drivers:*');
    expect(gate.enabled).toBe(false);
    createDebug.enable('iommu:*,-iommu:hw:gate-test');
    expect(gate.enabled).toBe(false);
    createDebug.enable('iommu:hw:gate-test');
    expect(gate.enabled).toBe(true);
    createDebug.disable();
    expect(gate.enabled).toBe(false);
  });
});
