/**
 * The policy matrix as one self-contained HTML page: five charts drawn here as inline SVG (ECharts,
 * rendered server-side through cli/svg-chart.ts, the project's one chart library), a table of every
 * cell, and the report's JSON embedded. Nothing is fetched when the page is opened and no chart needs
 * a script to appear.
 *
 * The page marks itself for tests and for people: `<body data-charts="N" data-painted="M">` once its
 * small check script ran in a browser (M: charts whose SVG laid out with bars or marks in it),
 * `data-error` if anything threw.
 */
import type { MatrixReport, MatrixCell } from '../scenarios/lib/kexec-matrix.js';
import { svgChart } from './svg-chart.js';

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** JSON that can sit inside a <script> element. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
}

/** An inline script body that cannot close its element early. */
function scriptText(src: string): string {
  return src.replace(/<\/script/gi, '<\\/script');
}

const PAGE_SCRIPT = String.raw`
(function () {
  var body = document.body;
  try {
    var figs = document.querySelectorAll('figure.chart');
    var painted = 0;
    for (var i = 0; i < figs.length; i++) {
      var svg = figs[i].querySelector('svg');
      if (!svg) continue;
      var box = svg.getBBox();
      var marks = svg.querySelectorAll('path, rect, circle').length;
      if (box.width > 0 && box.height > 0 && marks > 10) painted++;
    }
    body.setAttribute('data-charts', String(figs.length));
    body.setAttribute('data-painted', String(painted));
  } catch (e) {
    body.setAttribute('data-error', String(e && e.stack || e));
  }
})();
`;

const BLUE = 'rgba(40,100,190,0.8)';
const ORANGE = 'rgba(240,160,40,0.8)';
const RED = 'rgba(200,60,50,0.8)';
const GREEN = 'rgba(90,170,90,0.8)';
const PURPLE = 'rgba(120,40,160,0.8)';
const GREY = 'rgba(60,60,60,0.9)';
const TEAL = 'rgba(20,140,140,1)';

const label = (c: MatrixCell): string => `${c.kind} ${c.policy} · ${c.target} · quiesce=${c.quiesce}`;
const stanceColour = (c: MatrixCell): string => (c.stance === 'bypass' ? RED : BLUE);

/** The frame every chart shares: title, legend below, one rotated label per cell. */
function frame(title: string, labels: readonly string[]): Record<string, unknown> {
  return {
    title: { text: title, left: 'center', textStyle: { fontSize: 14 } },
    legend: { bottom: 0 },
    grid: { left: 80, right: 80, top: 50, bottom: 230 },
    xAxis: { type: 'category', data: labels, axisLabel: { interval: 0, rotate: 60, fontSize: 9 } },
    yAxis: { type: 'value', min: 0 },
  };
}

function bars(name: string, data: readonly number[], colour: string | readonly string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    type: 'bar',
    data: typeof colour === 'string' ? data : data.map((value, i) => ({ value, itemStyle: { color: colour[i] } })),
    itemStyle: { color: typeof colour === 'string' ? colour : colour[0] },
    ...extra,
  };
}

/** The five charts, each `[id, svg]`. */
function matrixCharts(report: MatrixReport): [string, string][] {
  const cells = report.cells;
  const labels = cells.map(label);
  const wide = { width: 1400, height: 560 };
  const kd = cells.filter((c) => c.kdump);
  const stack = { stack: 's' };
  return [
    ['chart-stray', svgChart({
      ...frame('Stray bytes per cell (red: bypass-stance policy, blue: abort-stance policy)', labels),
      series: [bars('stray bytes (written where the master had no buffer)', cells.map((c) => c.strayBytes), cells.map(stanceColour))],
    }, wide)],
    ['chart-blocked', svgChart({
      ...frame('Every transaction after the hand-over, by outcome', labels),
      series: [
        bars('blocked (abort, bus error)', cells.map((c) => c.blocked), BLUE, stack),
        bars('faulted (translation fault)', cells.map((c) => c.faulted), ORANGE, stack),
        bars('stray', cells.map((c) => c.strayWrites), RED, stack),
        bars('landed in owned memory', cells.map((c) => c.accounting.landedOwned), GREEN, stack),
        bars('still stalled at the end', cells.map((c) => c.accounting.outstanding), GREY, stack),
      ],
    }, wide)],
    ['chart-storm', svgChart({
      ...frame('Fault storm the incoming kernel sees', labels),
      yAxis: [
        { type: 'value', min: 0, name: 'failed / s' },
        { type: 'value', min: 0, name: 'interrupts, log lines', splitLine: { show: false } },
      ],
      series: [
        bars('failed transactions per second', cells.map((c) => c.storm.failedPerSecond), ORANGE),
        { name: 'interrupts', type: 'scatter', yAxisIndex: 1, symbolSize: 8, itemStyle: { color: PURPLE }, data: cells.map((c) => c.storm.interrupts) },
        { name: 'IOMMU log lines', type: 'scatter', yAxisIndex: 1, symbol: 'triangle', symbolSize: 8, itemStyle: { color: TEAL }, data: cells.map((c) => c.storm.iommuLogLines) },
      ],
    }, wide)],
    ['chart-boot', svgChart({
      ...frame('Boot outcome (green: booted, purple: booted as a kdump kernel, red: failed)', labels),
      series: [bars(
        'devices bound by the incoming kernel (red: it did not boot)',
        cells.map((c) => (c.boot.ok ? c.boot.devicesBound : 0.5)),
        cells.map((c) => (c.boot.ok ? (c.boot.kdump ? PURPLE : GREEN) : RED)),
      )],
    }, { width: 1400, height: 520 })],
    ['chart-kdump', svgChart({
      ...frame('kdump: bytes DMA changed after the panic', kd.map(label)),
      series: [
        bars("vmcore bytes changed outside the masters' buffers", kd.map((c) => c.kdump?.vmcoreBytesChangedOutsideBuffers ?? 0), RED),
        bars("vmcore bytes changed in the masters' own buffers", kd.map((c) => (c.kdump ? c.kdump.vmcoreBytesChanged - c.kdump.vmcoreBytesChangedOutsideBuffers : 0)), ORANGE),
        bars('crash kernel memory bytes changed', kd.map((c) => c.kdump?.crashKernelBytesChanged ?? 0), PURPLE),
      ],
    }, { width: 1400, height: 520 })],
  ];
}

export function matrixHtml(report: MatrixReport): string {
  const rows = report.cells
    .map(
      (c) =>
        `<tr class="${c.stance}"><td>${c.kind}</td><td>${escapeHtml(c.policy)}</td><td>${c.target}</td><td>${c.quiesce}</td>` +
        `<td>${c.strayWrites}</td><td>${c.strayBytes}</td><td>${c.blocked}</td><td>${c.faulted}</td><td>${c.storm.failedPerSecond}</td>` +
        `<td>${c.storm.interrupts}</td><td>${c.storm.iommuLogLines}</td><td>${c.storm.quietAfterNs === null ? 'never' : (c.storm.quietAfterNs / 1000).toFixed(1) + ' µs'}</td>` +
        `<td>${c.kdump ? c.kdump.vmcoreBytesChanged : '-'}</td><td>${c.kdump ? c.kdump.crashKernelBytesChanged : '-'}</td>` +
        `<td>${c.accounting.outstanding}</td><td>${c.boot.ok ? 'ok' : escapeHtml('failed: ' + (c.boot.error ?? ''))}</td><td>${c.accounting.balanced ? 'yes' : 'NO'}</td>` +
        `<td class="pol">${escapeHtml(c.policies.summary)}</td></tr>`,
    )
    .join('\n');
  const inputs = escapeHtml(JSON.stringify(report.inputs, null, 2));
  const charts = matrixCharts(report).map(([id, svg]) => `<figure class="chart" id="${id}">${svg}</figure>`).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>iommu-sim kexec policy matrix</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
figure.chart { margin: 1em 0 2em; border: 1px solid #ddd; width: max-content; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td.pol { text-align: left; }
tr.bypass td:first-child { border-left: 4px solid rgb(200,60,50); }
tr.abort td:first-child { border-left: 4px solid rgb(40,100,190); }
pre { background: #f6f6f6; padding: 0.5em; }
</style>
</head>
<body>
<h1>kexec / kdump policy matrix</h1>
<p>Report format ${report.format}, ${report.cells.length} cells. Each cell boots a kernel on a fresh machine, starts the DMA test
engines behind one kind of SMMU writing periodically (and on after failures), hands the machine over (kexec after
<code>.shutdown</code>, or a panic into a crash kernel), and accounts every transaction the engines issue afterwards.</p>
<h2>Inputs</h2>
<pre>${inputs}</pre>
<h2>Charts</h2>
${charts}
<h2>Cells</h2>
<table>
<thead><tr><th>smmu</th><th>policy</th><th>target</th><th>quiesce</th><th>stray writes</th><th>stray bytes</th><th>blocked</th><th>faulted</th>
<th>failed/s</th><th>irqs</th><th>iommu log lines</th><th>quiet after</th><th>vmcore Δ bytes</th><th>crash kernel Δ bytes</th><th>stalled</th><th>boot</th><th>balanced</th><th>policies in force</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
<script id="report-data" type="application/json">${scriptJson(report)}</script>
<script>${scriptText(PAGE_SCRIPT)}</script>
</body>
</html>
`;
}
