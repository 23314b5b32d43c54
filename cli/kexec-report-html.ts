/**
 * The policy matrix as one self-contained HTML page: the report's JSON embedded, Chart.js (its UMD
 * build, read from the installed package) inlined, five charts and a table of every cell. Nothing is
 * fetched when the page is opened.
 *
 * The page marks itself for tests and for people: `<body data-charts="N" data-painted="M">` once
 * its script ran (M: charts whose canvas has pixels drawn), `data-error` if anything threw.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { MatrixReport } from '../scenarios/lib/kexec-matrix.js';

/** Chart.js's browser build, from the installed package (its main entry sits beside it). */
function chartJsSource(): string {
  const require = createRequire(import.meta.url);
  const main = require.resolve('chart.js');
  return readFileSync(join(dirname(main), 'chart.umd.min.js'), 'utf8');
}

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
    var report = JSON.parse(document.getElementById('report-data').textContent);
    var cells = report.cells;
    var label = function (c) { return c.kind + ' ' + c.policy + ' · ' + c.target + ' · quiesce=' + c.quiesce; };
    var labels = cells.map(label);
    var stanceColour = function (c, a) { return c.stance === 'bypass' ? 'rgba(200,60,50,' + a + ')' : 'rgba(40,100,190,' + a + ')'; };
    var common = function (title, extra) {
      var o = {
        animation: false,
        responsive: false,
        plugins: { title: { display: true, text: title }, legend: { position: 'bottom' } },
        scales: { x: { ticks: { autoSkip: false, maxRotation: 90, minRotation: 60, font: { size: 9 } } }, y: { beginAtZero: true } }
      };
      for (var k in extra || {}) o[k] = extra[k];
      return o;
    };
    var charts = [];
    var make = function (id, cfg) { charts.push(new Chart(document.getElementById(id), cfg)); };

    make('chart-stray', {
      type: 'bar',
      data: { labels: labels, datasets: [{ label: 'stray bytes (written where the master had no buffer)', data: cells.map(function (c) { return c.strayBytes; }),
        backgroundColor: cells.map(function (c) { return stanceColour(c, 0.8); }) }] },
      options: common('Stray bytes per cell (red: bypass-stance policy, blue: abort-stance policy)')
    });
    make('chart-blocked', {
      type: 'bar',
      data: { labels: labels, datasets: [
        { label: 'blocked (abort, bus error)', data: cells.map(function (c) { return c.blocked; }), backgroundColor: 'rgba(40,100,190,0.8)', stack: 's' },
        { label: 'faulted (translation fault)', data: cells.map(function (c) { return c.faulted; }), backgroundColor: 'rgba(240,160,40,0.8)', stack: 's' },
        { label: 'stray', data: cells.map(function (c) { return c.strayWrites; }), backgroundColor: 'rgba(200,60,50,0.8)', stack: 's' },
        { label: 'landed in owned memory', data: cells.map(function (c) { return c.accounting.landedOwned; }), backgroundColor: 'rgba(90,170,90,0.8)', stack: 's' },
        { label: 'still stalled at the end', data: cells.map(function (c) { return c.accounting.outstanding; }), backgroundColor: 'rgba(60,60,60,0.9)', stack: 's' }
      ] },
      options: common('Every transaction after the hand-over, by outcome', { scales: { x: { stacked: true, ticks: { autoSkip: false, maxRotation: 90, minRotation: 60, font: { size: 9 } } }, y: { stacked: true, beginAtZero: true } } })
    });
    make('chart-storm', {
      type: 'bar',
      data: { labels: labels, datasets: [
        { type: 'bar', label: 'failed transactions per second', data: cells.map(function (c) { return c.storm.failedPerSecond; }), backgroundColor: 'rgba(240,160,40,0.8)', yAxisID: 'y' },
        { type: 'line', label: 'interrupts', data: cells.map(function (c) { return c.storm.interrupts; }), borderColor: 'rgba(120,40,160,1)', backgroundColor: 'rgba(120,40,160,1)', yAxisID: 'y1', showLine: false, pointRadius: 4 },
        { type: 'line', label: 'IOMMU log lines', data: cells.map(function (c) { return c.storm.iommuLogLines; }), borderColor: 'rgba(20,140,140,1)', backgroundColor: 'rgba(20,140,140,1)', yAxisID: 'y1', showLine: false, pointRadius: 4, pointStyle: 'triangle' }
      ] },
      options: common('Fault storm the incoming kernel sees', { scales: {
        x: { ticks: { autoSkip: false, maxRotation: 90, minRotation: 60, font: { size: 9 } } },
        y: { beginAtZero: true, position: 'left', title: { display: true, text: 'failed / s' } },
        y1: { beginAtZero: true, position: 'right', grid: { drawOnChartArea: false }, title: { display: true, text: 'interrupts, log lines' } } } })
    });
    make('chart-boot', {
      type: 'bar',
      data: { labels: labels, datasets: [{ label: 'devices bound by the incoming kernel (red: it did not boot)', data: cells.map(function (c) { return c.boot.ok ? c.boot.devicesBound : 0.5; }),
        backgroundColor: cells.map(function (c) { return c.boot.ok ? (c.boot.kdump ? 'rgba(120,40,160,0.8)' : 'rgba(90,170,90,0.8)') : 'rgba(200,60,50,0.9)'; }) }] },
      options: common('Boot outcome (green: booted, purple: booted as a kdump kernel, red: failed)')
    });
    var kd = cells.filter(function (c) { return c.kdump; });
    make('chart-kdump', {
      type: 'bar',
      data: { labels: kd.map(label), datasets: [
        { label: 'vmcore bytes changed outside the masters\' buffers', data: kd.map(function (c) { return c.kdump.vmcoreBytesChangedOutsideBuffers; }), backgroundColor: 'rgba(200,60,50,0.8)' },
        { label: 'vmcore bytes changed in the masters\' own buffers', data: kd.map(function (c) { return c.kdump.vmcoreBytesChanged - c.kdump.vmcoreBytesChangedOutsideBuffers; }), backgroundColor: 'rgba(240,160,40,0.8)' },
        { label: 'crash kernel memory bytes changed', data: kd.map(function (c) { return c.kdump.crashKernelBytesChanged; }), backgroundColor: 'rgba(120,40,160,0.8)' }
      ] },
      options: common('kdump: bytes DMA changed after the panic')
    });

    var painted = 0;
    charts.forEach(function (ch) {
      var cv = ch.canvas, ctx = cv.getContext('2d');
      var px = ctx.getImageData(0, 0, cv.width, cv.height).data, n = 0;
      for (var i = 3; i < px.length; i += 4) if (px[i] !== 0) { n++; if (n > 100) break; }
      if (n > 100) painted++;
    });
    body.setAttribute('data-charts', String(charts.length));
    body.setAttribute('data-painted', String(painted));
  } catch (e) {
    body.setAttribute('data-error', String(e && e.stack || e));
  }
})();
`;

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
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>iommu-sim kexec policy matrix</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
canvas { display: block; margin: 1em 0 2em; border: 1px solid #ddd; }
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
<canvas id="chart-stray" width="1400" height="420"></canvas>
<canvas id="chart-blocked" width="1400" height="420"></canvas>
<canvas id="chart-storm" width="1400" height="420"></canvas>
<canvas id="chart-boot" width="1400" height="380"></canvas>
<canvas id="chart-kdump" width="1400" height="380"></canvas>
<h2>Cells</h2>
<table>
<thead><tr><th>smmu</th><th>policy</th><th>target</th><th>quiesce</th><th>stray writes</th><th>stray bytes</th><th>blocked</th><th>faulted</th>
<th>failed/s</th><th>irqs</th><th>iommu log lines</th><th>quiet after</th><th>vmcore Δ bytes</th><th>crash kernel Δ bytes</th><th>stalled</th><th>boot</th><th>balanced</th><th>policies in force</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
<script id="report-data" type="application/json">${scriptJson(report)}</script>
<script>${scriptText(chartJsSource())}</script>
<script>${scriptText(PAGE_SCRIPT)}</script>
</body>
</html>
`;
}
