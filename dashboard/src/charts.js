// Chart.js charts of the dashboard: created once, updated in place (no animation).
import {
  ArcElement, BarController, BarElement, CategoryScale, Chart, DoughnutController, Filler, Legend,
  LinearScale, LineController, LineElement, PointElement, Tooltip,
} from 'chart.js';
import { SEVERITY_LOOK, alertFigures, alertKey, alertWindow, kindLabel } from './alerts.js';
import { DARK_COLOR, LIT_COLOR, PALETTE } from './config.js';
import { hhmm, int, money, pct } from './format.js';
import { byVolumeOrder } from './metrics.js';

Chart.register(
  ArcElement, BarController, BarElement, CategoryScale, DoughnutController, Filler, Legend, LinearScale,
  LineController, LineElement, PointElement, Tooltip,
);
Chart.defaults.color = '#cbd5e1';
Chart.defaults.borderColor = '#1e293b';
Chart.defaults.font.family = 'ui-sans-serif, system-ui, sans-serif';
Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.plugins.legend.labels.boxWidth = 12;

const sideColor = (isDark) => (isDark === null ? '#64748b' : isDark ? DARK_COLOR : LIT_COLOR);
const moneyAxis = { ticks: { callback: (v) => money(v) }, beginAtZero: true };

function bar(canvas, label, format) {
  return new Chart(canvas, {
    type: 'bar',
    data: { labels: [], datasets: [{ label, data: [], backgroundColor: [] }] },
    options: {
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `${label}: ${format(c.raw)}` } } },
      scales: { y: { ticks: { callback: (v) => format(v) }, beginAtZero: true }, x: { ticks: { autoSkip: false, maxRotation: 60 } } },
    },
  });
}

/** The alert-markers dataset of the over-time chart is the one flagged `isAlerts`. */
const isAlertsDataset = (d) => Boolean(d?.isAlerts);

/**
 * Draws a dashed vertical line in the severity's colour at each alert marker of the over-time chart
 * (Chart.js core only: an inline plugin, no annotation package).
 */
const alertLinesPlugin = {
  id: 'alertLines',
  afterDatasetsDraw(chart) {
    const i = chart.data.datasets.findIndex(isAlertsDataset);
    if (i < 0 || !chart.isDatasetVisible(i)) return;
    const { ctx, chartArea } = chart;
    const dataset = chart.data.datasets[i];
    ctx.save();
    ctx.setLineDash([4, 4]);
    ctx.lineWidth = 1.5;
    chart.getDatasetMeta(i).data.forEach((point, j) => {
      const alert = dataset.alerts[j];
      if (!alert) return;
      ctx.strokeStyle = SEVERITY_LOOK[alert.severity]?.colour ?? '#94a3b8';
      ctx.beginPath();
      ctx.moveTo(point.x, point.y);
      ctx.lineTo(point.x, chartArea.bottom);
      ctx.stroke();
    });
    ctx.restore();
  },
};

function alertTooltip(c) {
  const a = c.dataset.alerts[c.dataIndex];
  const f = alertFigures(a);
  return `${a.severity.toUpperCase()} ${kindLabel(a.kind)}${a.venue ? ` on ${a.venue}` : ''}: ${f.observed} vs ${
    f.baseline} (score ${f.score})`;
}

/** Build every chart on its canvas (ids in index.html); returns {name: Chart}. */
export function createCharts() {
  const el = (id) => document.getElementById(id);
  return {
    notional: bar(el('chart-notional'), 'Notional', money),
    trades: bar(el('chart-trades'), 'Trades', int),
    share: new Chart(el('chart-share'), {
      type: 'doughnut',
      data: { labels: [], datasets: [{ data: [], backgroundColor: [], borderColor: '#0f172a', borderWidth: 1 }] },
      options: {
        cutout: '55%',
        plugins: {
          legend: { position: 'right', labels: { font: { size: 11 } } },
          tooltip: { callbacks: { label: (c) => `${c.label}: ${pct(c.raw / c.dataset.data.reduce((a, v) => a + v, 0))}` } },
        },
      },
    }),
    overTime: new Chart(el('chart-over-time'), {
      type: 'line',
      data: { labels: [], datasets: [] },
      options: {
        elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.25 } },
        interaction: { mode: 'index', intersect: false },
        plugins: {
          tooltip: {
            filter: (c) => !isAlertsDataset(c.dataset) || Boolean(c.dataset.alerts[c.dataIndex]),
            callbacks: { label: (c) => (isAlertsDataset(c.dataset) ? alertTooltip(c) : `${c.dataset.label}: ${money(c.raw)}`) },
          },
          legend: { labels: { filter: (item, data) => !isAlertsDataset(data.datasets[item.datasetIndex]) } },
        },
        scales: { y: moneyAxis },
      },
      plugins: [alertLinesPlugin],
    }),
    tradeSize: new Chart(el('chart-trade-size'), {
      type: 'line',
      data: {
        labels: [],
        datasets: [
          { label: 'Dark (ATS + SDP)', data: [], borderColor: DARK_COLOR, backgroundColor: DARK_COLOR },
          { label: 'Lit (exchanges)', data: [], borderColor: LIT_COLOR, backgroundColor: LIT_COLOR },
        ],
      },
      options: {
        elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.25 } },
        interaction: { mode: 'index', intersect: false },
        plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${int(c.raw)} sh` } } },
        scales: { y: { beginAtZero: true, ticks: { callback: (v) => `${int(v)} sh` } } },
      },
    }),
    ranking: new Chart(el('chart-ranking'), {
      type: 'bar',
      data: { labels: [], datasets: [{ label: 'Dark share', data: [], backgroundColor: DARK_COLOR }] },
      options: {
        indexAxis: 'y',
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `Dark share: ${pct(c.raw)}` } } },
        scales: { x: { min: 0, max: 1, ticks: { callback: (v) => pct(v, 0) } }, y: { ticks: { autoSkip: false } } },
      },
    }),
  };
}

/** Per-venue charts of the selected symbol: notional, trade count, share of volume. */
export function updateVenueCharts(charts, perVenue) {
  const labels = perVenue.map((v) => v.venue);
  const colors = perVenue.map((v) => sideColor(v.is_dark));
  for (const [chart, field] of [[charts.notional, 'notional'], [charts.trades, 'trade_count']]) {
    chart.data.labels = labels;
    chart.data.datasets[0].data = perVenue.map((v) => v[field]);
    chart.data.datasets[0].backgroundColor = colors;
    chart.update('none');
    chart.canvas.dataset.labels = labels.join(','); // what is plotted, for tests and curious users
  }
  const byVolume = [...perVenue].sort(byVolumeOrder); // the top venue first (docs/market-rules.md)
  charts.share.data.labels = byVolume.map((v) => v.venue);
  charts.share.data.datasets[0].data = byVolume.map((v) => v.share_quantity);
  charts.share.data.datasets[0].backgroundColor = byVolume.map((v, i) => shade(sideColor(v.is_dark), i));
  charts.share.update('none');
}

/** Liquidity over time per venue (top venues + Other) and dark-vs-lit average trade size (drops the alert markers). */
export function updateTimeCharts(charts, overTime, tradeSize) {
  charts.overTime.data.labels = overTime.labels.map(hhmm);
  charts.overTime.data.datasets = overTime.series.map((s, i) => {
    const colour = s.is_dark === null ? '#64748b' : PALETTE[i % PALETTE.length]; // grey: "Other"
    return { label: s.venue, data: s.data, borderColor: colour, backgroundColor: colour,
      borderDash: s.is_dark === false ? [6, 3] : [] };
  });
  charts.overTime.update('none'); // its alert markers: updateAlertMarkers, called after this
  charts.tradeSize.data.labels = tradeSize.labels.map(hhmm);
  charts.tradeSize.data.datasets[0].data = tradeSize.dark;
  charts.tradeSize.data.datasets[1].data = tradeSize.lit;
  charts.tradeSize.update('none');
}

/**
 * The selected symbol's alert markers on the over-time chart (markers from alerts.alertMarkers: {index, alert}
 * into the chart's window starts): one point per alerted window, above every line, shaped and coloured by
 * severity, with a dashed line down to the axis (alertLinesPlugin). The canvas's data-alert-markers lists
 * what is drawn (key, severity, window_start, pixel x/y): for tests and curious users.
 */
export function updateAlertMarkers(charts, markers) {
  const chart = charts.overTime;
  const n = chart.data.labels.length;
  const lines = chart.data.datasets.filter((d) => !isAlertsDataset(d));
  const top = Math.max(0, ...lines.flatMap((d) => d.data.map((v) => Number(v) || 0)));
  const alerts = new Array(n).fill(null);
  for (const m of markers) if (m.index < n && !alerts[m.index]) alerts[m.index] = m.alert; // highest first
  const look = (a) => SEVERITY_LOOK[a?.severity] ?? { colour: '#94a3b8', pointStyle: 'circle' };
  const dataset = {
    label: 'Alerts', isAlerts: true, markers, alerts, order: -1, showLine: false,
    data: alerts.map((a) => (a ? (top || 1) * 1.08 : null)),
    pointRadius: alerts.map((a) => (a ? 8 : 0)),
    pointHoverRadius: alerts.map((a) => (a ? 10 : 0)),
    pointStyle: alerts.map((a) => look(a).pointStyle),
    pointBackgroundColor: alerts.map((a) => look(a).colour),
    pointBorderColor: '#0f172a', pointBorderWidth: 1.5, borderColor: '#f8fafc', backgroundColor: '#f8fafc',
  };
  chart.data.datasets = [...lines, ...(markers.length ? [dataset] : [])];
  chart.update('none');
  const i = chart.data.datasets.indexOf(dataset);
  const drawn = i < 0 ? [] : alerts.flatMap((a, j) => {
    if (!a) return [];
    const p = chart.getDatasetMeta(i).data[j];
    return [{ key: alertKey(a), severity: a.severity, window: alertWindow(a), window_start: a.window_start,
      x: Math.round(p.x), y: Math.round(p.y) }];
  });
  chart.canvas.dataset.alertMarkers = JSON.stringify(drawn);
}

/** Market-wide ranking of symbols by dark share (rows already sorted by the API). */
export function updateRankingChart(charts, rows, selected) {
  charts.ranking.data.labels = rows.map((r) => r.symbol);
  charts.ranking.data.datasets[0].data = rows.map((r) => r.dark_share);
  charts.ranking.data.datasets[0].backgroundColor = rows.map((r) => (r.symbol === selected ? '#e879f9' : DARK_COLOR));
  charts.ranking.update('none');
}

/** Alternate lightness so neighbouring doughnut slices of the same side stay apart. */
function shade(hex, i) {
  const alpha = [1, 0.8, 0.62, 0.46][i % 4];
  const n = Number.parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
