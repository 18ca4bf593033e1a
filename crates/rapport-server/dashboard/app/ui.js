// What every page shares: formatting, tables, empty states, error boxes, forms, charts.
// Values reach the page only through lit-html's bindings, which set text, never markup:
// a trait value of `<img src=x onerror=…>` is shown as those characters.
import { html, nothing } from '/assets/vendor/lit-html/lit-html.js';
import uPlot from '/assets/vendor/uplot/uPlot.esm.js';

export { html, nothing };

const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const money = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2, minimumFractionDigits: 2 });

/** A number as people read it (1,234.5), or an em dash for none. */
export function num(n) {
  return n === null || n === undefined || Number.isNaN(n) ? '—' : numbers.format(n);
}

/** An amount with two decimals. */
export function amount(n) {
  return n === null || n === undefined ? '—' : money.format(n);
}

/** A share (0.123) as a percentage (12.3 %). */
export function pct(p, digits = 1) {
  return p === null || p === undefined ? '—' : `${(p * 100).toFixed(digits)} %`;
}

/** Bytes in KiB, MiB, GiB. */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** An instant (RFC 3339) in the reader's time zone, with its exact value on hover. */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return html`<time datetime=${iso} title=${iso}>${d.toLocaleString()}</time>`;
}

/** How long ago an instant was: "3 min ago". */
export function ago(iso) {
  if (!iso) return '—';
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  const text =
    s < 60 ? `${Math.max(0, Math.round(s))} s ago`
      : s < 3600 ? `${Math.round(s / 60)} min ago`
        : s < 86400 ? `${Math.round(s / 3600)} h ago`
          : `${Math.round(s / 86400)} d ago`;
  return html`<time datetime=${iso} title=${new Date(iso).toLocaleString()}>${text}</time>`;
}

/** Any JSON value as short text (objects as JSON). */
export function value(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** A reference to a profile the API accepts: its id, or `type:value`. */
export function profileHref(ref) {
  return `#/profiles/${encodeURIComponent(ref)}`;
}

/**
 * A message from the API as text, its `quoted` parts (names of fields, events, commands) as
 * code. Every part stays text: nothing in the message is read as markup.
 */
export function prose(text) {
  if (text === null || text === undefined) return nothing;
  const parts = String(text).split('`');
  // An unmatched backquote leaves the message as it came.
  if (parts.length % 2 === 0) return String(text);
  return parts.map((p, i) => (i % 2 ? html`<code>${p}</code>` : p));
}

/** An error answered by the API, with its message, code and field. */
export function errorBox(err) {
  if (!err) return nothing;
  return html`<div class="error" role="alert">
    <strong>${prose(err.message)}</strong>
    ${err.code ? html`<span class="code">${err.code}${err.field ? ` · ${err.field}` : ''}</span>` : nothing}
  </div>`;
}

/** An empty state: what is missing (a string is read as [`prose`]), and what to do about it. */
export function empty(title, next) {
  const t = typeof title === 'string' ? prose(title) : title;
  return html`<div class="empty"><p><strong>${t}</strong></p><p>${next}</p></div>`;
}

/** A figure with a label, for the top of a page. */
export function stat(label, figure, note) {
  return html`<div class="stat"><div class="label">${label}</div><div class="figure">${figure}</div>${note ? html`<div class="note">${note}</div>` : nothing}</div>`;
}

/**
 * A table: `columns` is a list of [heading, (row) => cell]; `caption` names it for screen
 * readers. An empty list shows `emptyText`.
 */
export function table(caption, columns, rows, emptyText = 'Nothing yet.') {
  if (!rows || rows.length === 0) return html`<p class="muted">${emptyText}</p>`;
  return html`<div class="table-wrap"><table>
    <caption class="visually-hidden">${caption}</caption>
    <thead><tr>${columns.map(([h]) => html`<th scope="col">${h}</th>`)}</tr></thead>
    <tbody>${rows.map((r) => html`<tr>${columns.map(([, f]) => html`<td>${f(r)}</td>`)}</tr>`)}</tbody>
  </table></div>`;
}

/** Definition list of key → value pairs (traits). */
export function pairs(caption, object) {
  const entries = Object.entries(object || {});
  if (entries.length === 0) return html`<p class="muted">None.</p>`;
  return html`<dl class="pairs" aria-label=${caption}>${entries.map(
    ([k, v]) => html`<div><dt>${k}</dt><dd>${value(v)}</dd></div>`,
  )}</dl>`;
}

/** JSON shown pretty, as text. */
export function json(v) {
  return html`<pre class="json" tabindex="0">${JSON.stringify(v, null, 2)}</pre>`;
}

/** The value of a form's field by name. */
export function field(form, name) {
  const el = form.elements.namedItem(name);
  return el ? el.value : '';
}

const palette = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

/** The colour of series `i`. */
export function colour(i) {
  return palette[i % palette.length];
}

/**
 * `<r-chart>`: a uPlot chart. Set `.config = {label, x: [...], series: [{label, values,
 * colour?, dash?}], bars?: true, xTime?: true, xRange?: [min, max], height?, band?: [upper,
 * lower]}`; `label` describes the chart to screen readers; `xRange` fixes the x axis (a
 * window of time that may hold one point); `band` names two series (by index) whose gap is
 * shaded, e.g. a confidence interval. Redrawn when its config is set and when its width
 * changes.
 */
class Chart extends HTMLElement {
  set config(c) {
    this._config = c;
    this.draw();
  }

  connectedCallback() {
    this.setAttribute('role', 'img');
    if (!this._observer) {
      this._observer = new ResizeObserver(() => {
        if (this._plot && Math.abs(this._plot.width - this.clientWidth) > 4) this.draw();
      });
    }
    this._observer.observe(this);
    this.draw();
  }

  disconnectedCallback() {
    this._observer?.disconnect();
    this._plot?.destroy();
    this._plot = null;
  }

  draw() {
    const c = this._config;
    if (!c || !this.isConnected) return;
    this.setAttribute('aria-label', c.label);
    this._plot?.destroy();
    this.replaceChildren();
    const bars = c.bars ? uPlot.paths.bars({ size: [0.7, 60] }) : undefined;
    const opts = {
      width: Math.max(200, this.clientWidth || 600),
      height: c.height || 200,
      scales: { x: c.xRange ? { time: !!c.xTime, range: () => c.xRange } : { time: !!c.xTime } },
      legend: { show: c.series.length > 1 || !!c.legend },
      axes: [
        c.xTime ? {} : { values: (u, vals) => vals.map((v) => (c.xLabels ? c.xLabels[v] ?? '' : num(v))) },
        { values: (u, vals) => vals.map((v) => num(v)) },
      ],
      series: [
        // The legend shows the point under the cursor; with none, it shows no value.
        c.xTime
          ? { label: c.xLabel || 'time', value: (u, v) => (v == null ? '' : new Date(v * 1000).toLocaleString()) }
          : { label: c.xLabel || '', value: (u, v) => (v == null ? '' : c.xLabels ? c.xLabels[v] ?? '' : num(v)) },
        ...c.series.map((s, i) => ({
          label: s.label,
          stroke: s.colour || colour(i),
          fill: c.bars || s.fill ? (s.colour || colour(i)) + '55' : undefined,
          width: c.bars ? 0 : s.dash ? 1 : 2,
          dash: s.dash ? [4, 4] : undefined,
          paths: bars,
          points: { show: !c.bars && !s.dash && c.x.length < 40 },
        })),
      ],
    };
    if (c.band) {
      const [upper, lower] = c.band;
      opts.bands = [{ series: [upper + 1, lower + 1], fill: (c.series[upper].colour || colour(upper)) + '22' }];
    }
    this._plot = new uPlot(opts, [c.x, ...c.series.map((s) => s.values)], this);
  }
}
customElements.define('r-chart', Chart);

/** A chart element for `config` (see Chart). */
export function chart(config) {
  return html`<r-chart .config=${config}></r-chart>`;
}
