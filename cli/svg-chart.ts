/**
 * The project's one way to draw a chart: an ECharts option rendered server-side to a standalone SVG
 * string. Used by the kexec matrix report and the bench's cost curves, so a report is a file that
 * opens anywhere with nothing to fetch and no script to run.
 */
import * as echarts from 'echarts';

/** Render `option` (an ECharts option object) to SVG; animation is always off (nothing to wait for). */
export function svgChart(option: echarts.EChartsCoreOption, size: { width: number; height: number }): string {
  const chart = echarts.init(null, null, { renderer: 'svg', ssr: true, width: size.width, height: size.height });
  try {
    chart.setOption({ ...option, animation: false });
    return chart.renderToSVGString();
  } finally {
    chart.dispose();
  }
}
