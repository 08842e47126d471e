/**
 * Charts of the report: vega-lite specifications rendered headless to SVG (no browser, no canvas),
 * so the page shows them as plain images.
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';

/** One point of a line chart. */
export interface LinePoint {
  x: number;
  y: number;
  series: string;
}

/** One bar of a grouped bar chart. */
export interface BarValue {
  group: string;
  series: string;
  value: number;
}

async function render(spec: vl.TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Lines of `y` against `x`, one colour per series. */
export function lineChart(points: LinePoint[], labels: { x: string; y: string; title: string }): Promise<string> {
  return render({
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: labels.title,
    width: 420,
    height: 220,
    data: { values: points },
    mark: { type: 'line', point: points.length <= 60 },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: labels.x },
      y: { field: 'y', type: 'quantitative', title: labels.y, scale: { zero: false } },
      color: { field: 'series', type: 'nominal', title: null },
    },
  });
}

/** Bars of `value` per group, one colour (and one bar beside the others) per series. */
export function barChart(values: BarValue[], labels: { group: string; value: string; title: string }): Promise<string> {
  return render({
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: labels.title,
    width: { step: 18 },
    height: 220,
    data: { values },
    mark: 'bar',
    encoding: {
      x: { field: 'group', type: 'nominal', title: labels.group, sort: null },
      xOffset: { field: 'series', type: 'nominal' },
      y: { field: 'value', type: 'quantitative', title: labels.value, stack: null },
      color: { field: 'series', type: 'nominal', title: null },
    },
  });
}
