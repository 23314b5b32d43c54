/**
 * Whether a `debug` namespace is enabled, for the checks made per MMIO access or per scheduler step.
 *
 * A logger's own `enabled` getter re-reads the library's namespace string from its function object on
 * every call, a dictionary lookup of about 15 ns: several per strict unmap. A gate keeps the answer
 * and asks the logger again only after the namespaces changed, which is always through
 * `createDebug.enable()` (`disable()` calls it too, and the library's start-up `DEBUG=` setting
 * happens before any gate answers). This module counts those calls; `DEBUG=…` and enabling or
 * disabling namespaces at run time behave exactly as with `log.enabled`. (A logger whose `enabled`
 * is assigned directly is not seen: nothing here does that.)
 */
import createDebug from 'debug';

let generation = 0;
const libraryEnable = createDebug.enable;
createDebug.enable = (namespaces: string): void => {
  generation++;
  libraryEnable(namespaces);
};

export class DebugGate {
  private seen = -1;
  private on = false;

  constructor(private readonly log: createDebug.Debugger) {}

  /** `log.enabled`, re-read only when the enabled namespaces may have changed. */
  get enabled(): boolean {
    if (this.seen !== generation) {
      this.seen = generation;
      this.on = this.log.enabled;
    }
    return this.on;
  }
}
