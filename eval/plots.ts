/**
 * The comparison's plots, as vega-lite specifications rendered headless to SVG by vega and
 * converted to PNG with sharp: the headline metrics (R@1, top-1) against the noise rate for both
 * methods, noise-detection AUC by epoch, and training loss curves.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { CompareJson } from './compare.ts';

/** A rendered plot, paths relative to the comparison's output directory. */
export interface PlotRef {
  title: string;
  svg: string;
  png: string;
}

/** A plot to render: a file stem and a vega-lite spec. */
interface PlotSpec {
  stem: string;
  title: string;
  spec: vl.TopLevelSpec;
}

/** Renders a vega-lite spec to an SVG string (no browser: vega's headless `renderer: 'none'`). */
export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/@/g, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

/** The plots a comparison gets: one per headline metric (R@1 and top-1 metrics), AUC by epoch, loss curves. */
export function plotSpecs(result: CompareJson): PlotSpec[] {
  const specs: PlotSpec[] = [];
  const headline = [...new Set(result.summary.map((s) => s.metric))].filter((m) => /\/(R@1|top1)$/.test(m));
  for (const metric of headline) {
    const rows = result.summary
      .filter((s) => s.metric === metric)
      .map((s) => ({ ...s, low: s.mean - s.spread, high: s.mean + s.spread }));
    const label = metric.endsWith('top1') ? 'top-1 accuracy (%)' : 'R@1 (%)';
    specs.push({
      stem: `${slug(metric)}-vs-noise`,
      title: `${metric} against noise rate`,
      spec: {
        $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
        title: `${metric} against noise rate`,
        width: 420,
        height: 280,
        data: { values: rows },
        layer: [
          {
            mark: { type: 'line', point: true },
            encoding: {
              x: { field: 'noiseRate', type: 'quantitative', title: 'noise rate (fraction of captions shuffled)' },
              y: { field: 'mean', type: 'quantitative', title: label },
              color: { field: 'method', type: 'nominal' },
            },
          },
          {
            mark: { type: 'errorbar' },
            encoding: {
              x: { field: 'noiseRate', type: 'quantitative' },
              y: { field: 'low', type: 'quantitative', title: label },
              y2: { field: 'high' },
              color: { field: 'method', type: 'nominal' },
            },
          },
        ],
      } as vl.TopLevelSpec,
    });
  }
  const auc = result.detection.filter((d) => d.auc !== null);
  if (auc.length > 0) {
    specs.push({
      stem: 'auc-by-epoch',
      title: 'Noise-detection ROC AUC by epoch',
      spec: {
        $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
        title: 'Noise-detection ROC AUC by epoch (nlip)',
        width: 420,
        height: 280,
        data: { values: auc.map((d) => ({ ...d, rate: String(d.noiseRate) })) },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'epoch', type: 'quantitative', title: 'epoch' },
          y: { field: 'auc', type: 'quantitative', title: 'ROC AUC', scale: { domain: [0.4, 1] } },
          color: { field: 'rate', type: 'nominal', title: 'noise rate' },
          detail: { field: 'seed', type: 'nominal' },
        },
      } as vl.TopLevelSpec,
    });
  }
  if (result.curves.length > 0) {
    specs.push({
      stem: 'loss-curves',
      title: 'Training loss',
      spec: {
        $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
        title: 'Training loss by step',
        data: {
          values: result.curves.map((c) => ({ ...c, run: `${c.method} seed ${c.seed}`, rate: `noise ${c.noiseRate}` })),
        },
        facet: { column: { field: 'rate', type: 'nominal', title: null } },
        spec: {
          width: 260,
          height: 200,
          mark: { type: 'line', strokeWidth: 1 },
          encoding: {
            x: { field: 'step', type: 'quantitative' },
            y: { field: 'loss', type: 'quantitative' },
            color: { field: 'method', type: 'nominal' },
            detail: { field: 'run', type: 'nominal' },
          },
        },
      } as vl.TopLevelSpec,
    });
  }
  return specs;
}

/** Writes every plot of `result` as SVG and PNG into `dir`; returns their paths relative to `dir`'s parent. */
export async function renderPlots(result: CompareJson, dir: string): Promise<PlotRef[]> {
  mkdirSync(dir, { recursive: true });
  const refs: PlotRef[] = [];
  for (const { stem, title, spec } of plotSpecs(result)) {
    const svg = await renderSvg(spec);
    const svgPath = join(dir, `${stem}.svg`);
    const pngPath = join(dir, `${stem}.png`);
    writeFileSync(`${svgPath}.tmp`, svg);
    renameSync(`${svgPath}.tmp`, svgPath);
    // Vega's SVG has no background; PNG viewers would show it transparent or black.
    await sharp(Buffer.from(svg), { density: 144 }).flatten({ background: '#ffffff' }).png().toFile(`${pngPath}.tmp`);
    renameSync(`${pngPath}.tmp`, pngPath);
    refs.push({ title, svg: `plots/${stem}.svg`, png: `plots/${stem}.png` });
  }
  return refs;
}
