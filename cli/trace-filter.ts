/**
 * `--trace-filter GLOB...`: keep the trace events whose name matches one of the globs, as QEMU's
 * `-trace enable=PATTERN` does (`*` any run of characters, `?` one). A glob starting with `!`
 * drops what it matches instead (`'!CMD_SYNC'`). No globs: keep everything.
 */
import { traceEventName, type TraceEvent } from '../hw/trace.js';

function globRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export function traceFilter(globs: readonly string[] | undefined): ((e: TraceEvent) => boolean) | null {
  if (!globs || globs.length === 0) return null;
  const keep = globs.filter((g) => !g.startsWith('!')).map(globRegExp);
  const drop = globs.filter((g) => g.startsWith('!')).map((g) => globRegExp(g.slice(1)));
  return (e) => {
    const name = traceEventName(e);
    if (drop.some((r) => r.test(name))) return false;
    return keep.length === 0 || keep.some((r) => r.test(name));
  };
}

/** A trace subscriber that appends the events the globs keep (all without globs) to `events`. */
export function keepInto(events: TraceEvent[], globs: readonly string[] | undefined): (e: TraceEvent) => void {
  const keep = traceFilter(globs);
  return keep ? (e) => void (keep(e) && events.push(e)) : (e) => void events.push(e);
}
