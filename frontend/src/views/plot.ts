// A time-series plot (uPlot: canvas, small, fast) in the dashboard's dark colours, sized to its
// box and redrawn with new data in place. One per chart; the views own them.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import type { Columns } from "./series";

export const SERIES_COLOURS = ["#8ab4f8", "#66bb6a", "#f9a825", "#ef5350", "#ab47bc", "#26c6da", "#ff7043", "#d4e157"];

export interface PlotSeries {
  label: string;
  colour?: string;
  /** Fill under the line (a translucent copy of its colour). */
  fill?: boolean;
  /** Digits in the legend's value. */
  digits?: number;
}

export interface PlotOptions {
  title: string;
  unit: string;
  /** Fixed y range (per cent plots: 0..100); auto otherwise. */
  yRange?: [number, number];
  height?: number;
  /** Bars instead of lines (counts per bucket). */
  bars?: boolean;
}

const AXIS = { stroke: "#9aa5b1", grid: { stroke: "#2f363d", width: 1 }, ticks: { stroke: "#3a424b", width: 1 } };

export class Plot {
  private chart: uPlot | null = null;
  private series: PlotSeries[] = [];
  /** The x axis spans the range asked for (seconds), not just the points found in it. */
  private xRange: [number, number] | null = null;
  private readonly resize = new ResizeObserver(() => this.fit());

  constructor(
    readonly root: HTMLElement,
    private readonly options: PlotOptions,
  ) {
    root.classList.add("plot");
    this.resize.observe(root);
  }

  /** New data (and series, if they changed: the pool's slices come and go). */
  set(series: PlotSeries[], columns: Columns, xRange?: [number, number]): void {
    this.xRange = xRange ?? null;
    this.root.dataset["points"] = String(columns[0].length);
    const same = this.chart && series.length === this.series.length && series.every((s, i) => s.label === this.series[i]!.label);
    if (same) {
      this.chart!.setData(columns as uPlot.AlignedData);
      return;
    }
    this.chart?.destroy();
    this.series = series;
    this.chart = new uPlot(this.build(series), columns as uPlot.AlignedData, this.root);
  }

  private build(series: PlotSeries[]): uPlot.Options {
    const width = Math.max(200, this.root.clientWidth || 600);
    const bars = this.options.bars ? uPlot.paths.bars!({ size: [0.7, 60] }) : undefined;
    return {
      title: this.options.title,
      width,
      height: this.options.height ?? 200,
      scales: {
        x: { time: true, range: (_u: uPlot, min: number, max: number): uPlot.Range.MinMax => this.xRange ?? [min, max] }, y: this.options.yRange ? { range: this.options.yRange } : { auto: true },
      },
      axes: [{ ...AXIS }, { ...AXIS, label: this.options.unit, size: 56 }],
      series: [
        {},
        ...series.map((s, i) => {
          const colour = s.colour ?? SERIES_COLOURS[i % SERIES_COLOURS.length]!;
          return {
            label: s.label,
            stroke: colour,
            width: 2,
            fill: s.fill || bars ? `${colour}33` : undefined,
            paths: bars,
            // uPlot's own rule: points drawn while they are sparse (a few samples), not when dense.
            value: (_: uPlot, v: number | null) => (v === null || v === undefined ? "–" : v.toFixed(s.digits ?? 1)),
          } satisfies uPlot.Series;
        }),
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
  }

  private fit(): void {
    if (!this.chart || !this.root.clientWidth) return;
    if (Math.abs(this.chart.width - this.root.clientWidth) > 2) this.chart.setSize({ width: this.root.clientWidth, height: this.options.height ?? 200 });
  }

  /** Points drawn (tests look at it). */
  points(): number {
    return this.chart ? this.chart.data[0].length : 0;
  }
}
