/**
 * Plain-text tables for the terminal: columns padded to their widest cell. On a terminal narrower
 * than the table, the columns named in `wrap` (by default the last) are narrowed and their cells
 * wrapped onto continuation lines: nothing is ever cut off.
 */
export interface TableOptions {
  /** Columns that may wrap, by index (default: the last). */
  wrap?: readonly number[];
  /** Width to fit (default: the terminal's when stdout is one, else unlimited). */
  width?: number;
}

const GAP = 2;
const MIN_WRAPPED = 16;

function terminalWidth(): number {
  return process.stdout.isTTY && process.stdout.columns ? process.stdout.columns : Number.POSITIVE_INFINITY;
}

/** Split text into lines of at most `width` characters, at spaces where it can. */
export function wrapText(text: string, width: number): string[] {
  if (text.length <= width) return [text];
  const lines: string[] = [];
  let rest = text;
  while (rest.length > width) {
    let cut = rest.lastIndexOf(' ', width);
    if (cut <= 0) cut = width;
    lines.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest.length) lines.push(rest);
  return lines;
}

export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[], opts: TableOptions = {}): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const limit = opts.width ?? terminalWidth();
  const wrap = [...(opts.wrap ?? [headers.length - 1])];
  const total = (): number => widths.reduce((a, w) => a + w, 0) + GAP * (widths.length - 1);
  // Narrow the widest wrappable column, one character at a time, until the table fits.
  while (total() > limit) {
    const i = wrap.filter((c) => widths[c] > Math.max(MIN_WRAPPED, headers[c].length)).sort((a, b) => widths[b] - widths[a])[0];
    if (i === undefined) break;
    widths[i]--;
  }
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join(' '.repeat(GAP)).trimEnd();
  const rowLines = (cells: readonly string[]): string[] => {
    const parts = cells.map((c, i) => (wrap.includes(i) ? wrapText(c, widths[i]) : [c]));
    const height = Math.max(...parts.map((p) => p.length));
    return Array.from({ length: height }, (_, k) => line(parts.map((p) => p[k] ?? '')));
  };
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.flatMap(rowLines)].join('\n');
}
