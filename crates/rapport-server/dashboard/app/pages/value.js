// Value: what the customer-value models say — the CLV distribution, the silent majority by
// cohort, NPS / CES / CSAT over time with their intervals, earned growth, health bands with
// the alert feed and renewals at risk, and the latest fits with their held-out checks. Fit
// buttons start a job and follow it. Every figure is an API answer (docs/value/live.md).
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, num, amount, pct, stat, chart, empty, profileHref, prose } from '../ui.js';

const MODELS = [['clv', 'Fit CLV'], ['churn', 'Fit churn'], ['health', 'Fit health']];

/** The reports computed from every profile's history, loaded after the page is drawn. */
const SLOW_REPORTS = [
  ['silent', '/api/v1/reports/silent-majority'],
  ['nps', '/api/v1/reports/nps'],
  ['ces', '/api/v1/reports/ces'],
  ['csat', '/api/v1/reports/csat'],
  ['growth', '/api/v1/reports/earned-growth'],
];

/** An answer, or the 404 that says it is not there yet, or another error: per section. */
function settle(p) {
  return p.then((data) => ({ data }), (err) => (err.status === 404 ? { missing: err } : { error: err }));
}

/** Every alert, newest first (the feed is oldest first, paged by `next_after`). */
async function newestAlerts() {
  let after;
  let out = [];
  for (let i = 0; i < 20; i += 1) {
    const page = await api('/api/v1/alerts', { query: { limit: 1000, after } });
    out = out.concat(page.data || []).slice(-500);
    if (!page.next_after) break;
    after = page.next_after;
  }
  return out.reverse();
}

const unix = (day) => new Date(day).getTime() / 1000;

function histogram(label, d, format) {
  const h = d.histogram;
  const labels = h.counts.map((_, i) => `${format(h.edges[i])}–${format(h.edges[i + 1])}`);
  return chart({
    label: `${label}: ${h.counts.length} bins (${h.scale}), ${labels.map((l, i) => `${l}: ${h.counts[i]}`).join(', ')}`,
    x: h.counts.map((_, i) => i),
    xLabels: labels,
    bars: true,
    series: [{ label: 'profiles', values: h.counts }],
  });
}

function quantiles(caption, d, format) {
  const q = d.quantiles;
  return table(caption, [
    ['Count', () => num(d.count)], ['Mean', () => format(d.mean)], ['p10', () => format(q.p10)],
    ['p25', () => format(q.p25)], ['Median', () => format(q.p50)], ['p75', () => format(q.p75)],
    ['p90', () => format(q.p90)], ['p99', () => format(q.p99)], ['Total', () => format(d.total)],
  ], [d]);
}

function section(id, title, body) {
  return html`<section aria-labelledby=${id}><h2 id=${id}>${title}</h2>${body}</section>`;
}

function missingOr(answer, whenMissing, f) {
  if (answer.pending) return html`<p class="muted" aria-busy="true">Computing from every profile's history…</p>`;
  if (answer.error) return errorBox(answer.error);
  if (answer.missing) return whenMissing;
  return f(answer.data);
}

const noClv = empty('No CLV fit yet.', html`Press <strong>Fit CLV</strong>, or run <code>rapport fit clv</code>. It needs <code>Order Completed</code> track events with a <code>revenue</code> property from at least 50 buyers, 20 of them repeat buyers.`);
// The sections after the first only point back to it.
const noClvAgain = html`<p class="muted">Needs a CLV fit (see “Customer lifetime value” above).</p>`;

function surveyView(name, r, figure) {
  if (!r.overall) {
    return html`<h3>${name}</h3>${empty(`No ${name} answer: ${r.note || 'nothing to report.'}`,
      html`Send <code>${r.read.event}</code> track events with <code>survey: "${r.survey}"</code> and <code>score</code> (properties read: ${r.read.properties.join(', ')}); see <code>docs/value/live.md</code>, “Surveys and earned growth”.`)}`;
  }
  const rows = r.series.filter((s) => s.period);
  const o = r.overall;
  return html`<h3>${name}</h3>
    <div class="stats">${stat(name, html`<span data-testid="${r.metric}-overall">${num(figure(o))}</span>`,
      o.ci ? `${Math.round(o.confidence * 100)} % interval ${num(o.ci.low)} to ${num(o.ci.high)}` : nothing)}
      ${stat('Responses', num(r.responses), r.invalid_answers ? `${num(r.invalid_answers)} invalid` : nothing)}</div>
    ${r.note ? html`<p class="muted">${prose(r.note)}</p>` : nothing}
    ${rows.length < 1 ? nothing : chart({
      label: `${name} by month with its confidence interval: ${rows.map((s) => `${s.period} ${num(figure(s.report))}`).join(', ')}`,
      xTime: true,
      x: rows.map((s) => unix(s.period)),
      series: [
        { label: name, values: rows.map((s) => figure(s.report)) },
        { label: 'interval high', values: rows.map((s) => s.report.ci?.high ?? null), dash: true, colour: '#64748b' },
        { label: 'interval low', values: rows.map((s) => s.report.ci?.low ?? null), dash: true, colour: '#64748b' },
      ],
      band: [1, 2],
    })}
    ${table(`${name} by month`, [
      ['Month', (s) => s.period], ['Responses', (s) => num(s.report.responses)],
      [name, (s) => num(figure(s.report))],
      ['Interval', (s) => (s.report.ci ? `${num(s.report.ci.low)} to ${num(s.report.ci.high)}` : '—')],
    ], rows)}`;
}

function warnings(model, fit) {
  if (!fit || !fit.warnings || fit.warnings.length === 0) return nothing;
  return html`<div class="error" role="alert"><strong>The latest ${model} fit has ${fit.warnings.length} warning${fit.warnings.length === 1 ? '' : 's'}:</strong>
    <ul>${fit.warnings.map((w) => html`<li>${w}</li>`)}</ul></div>`;
}

export default {
  title: 'Value',
  async load(ctx) {
    const [clv, churn, health, dist, healthReport, alerts, jobs] = await Promise.all([
      settle(api('/api/v1/models/clv')),
      settle(api('/api/v1/models/churn')),
      settle(api('/api/v1/models/health')),
      settle(api('/api/v1/reports/clv-distribution')),
      settle(api('/api/v1/reports/health')),
      settle(newestAlerts()),
      settle(api('/api/v1/jobs')),
    ]);
    // A fit started elsewhere (the CLI, the schedule) is followed too.
    ctx.state.jobs = ctx.state.jobs || {};
    for (const j of jobs.data?.data || []) {
      if (j.state === 'running' && !ctx.state.jobs[j.model]) ctx.state.jobs[j.model] = j;
    }
    const data = { clv, churn, health, dist, healthReport, alerts };
    // These read every profile's history when asked (seconds on a large store): the page
    // is usable without them, and each section fills in when its answer comes.
    for (const [key, path] of SLOW_REPORTS) {
      data[key] = { pending: true };
      settle(api(path)).then((answer) => {
        data[key] = answer;
        ctx.update();
      });
    }
    return data;
  },
  started(ctx) {
    ctx.every(1000, async () => {
      const s = ctx.state;
      let finished = false;
      for (const [model, job] of Object.entries(s.jobs || {})) {
        if (job.state !== 'running') continue;
        try {
          s.jobs[model] = await api(`/api/v1/jobs/${encodeURIComponent(job.id)}`);
          if (s.jobs[model].state !== 'running') finished = true;
        } catch (err) {
          s.jobs[model] = { ...job, state: 'failed', error: err.message };
        }
        ctx.update();
      }
      if (finished) ctx.reload();
    });
  },
  view(ctx) {
    const d = ctx.data;
    const s = ctx.state;
    s.jobs = s.jobs || {};
    s.fitErrors = s.fitErrors || {};
    const fit = (model) => async () => {
      s.fitErrors[model] = null;
      try {
        s.jobs[model] = await api(`/api/v1/models/${model}/fit`, { method: 'POST' });
      } catch (err) {
        s.fitErrors[model] = err;
      }
      ctx.update();
    };
    const jobLine = (model) => {
      const j = s.jobs[model];
      if (!j) return nothing;
      if (j.state === 'running') {
        return html`<p role="status" data-testid="job-${model}">${model}: ${j.phase} <progress max=${j.total || 1} value=${j.done} aria-label="${model} fit progress"></progress> ${num(j.done)} / ${num(j.total)}</p>`;
      }
      if (j.state === 'failed') {
        return html`<div class="error" role="alert" data-testid="job-${model}"><strong>The ${model} fit failed: ${j.error}</strong></div>`;
      }
      return html`<p class="notice" role="status" data-testid="job-${model}">The ${model} fit ${j.state}${j.finished_at ? html` at ${when(j.finished_at)}` : nothing}.</p>`;
    };
    const money = (v) => amount(v);
    return html`<h1>Value</h1>
      <p class="muted">What the customer-value models say about the customers in this store. Fits run on the whole log; reports are computed when the page loads.</p>
      ${ctx.can('configure')
        ? html`<div class="inline" role="group" aria-label="Fits">${MODELS.map(([m, label]) => html`<button data-testid="fit-${m}" ?disabled=${s.jobs[m]?.state === 'running'} @click=${fit(m)}>${label}</button> `)}</div>
          ${MODELS.map(([m]) => html`${errorBox(s.fitErrors[m])}${jobLine(m)}`)}`
        : html`<p class="muted">Starting a fit needs a key with the <code>configure</code> scope.</p>`}
      ${warnings('CLV', d.clv.data)}${warnings('churn', d.churn.data)}${warnings('health', d.health.data)}

      ${section('h-clv', 'Customer lifetime value', missingOr(d.dist, noClv, (r) => html`
        <div class="stats">
          ${stat('Customers scored', html`<span data-testid="clv-customers">${num(r.profiles)}</span>`, html`by the fit of ${when(r.fitted_at)} (${r.model}${r.spend_model ? ` + ${r.spend_model}` : ''})`)}
          ${r.clv ? stat('Median CLV', money(r.clv.quantiles.p50), `mean ${money(r.clv.mean)}`) : nothing}
          ${r.clv ? stat('Total CLV', money(r.clv.total), `top 10 % from ${money(r.clv.quantiles.p90)}`) : nothing}
          ${r.p_alive ? stat('Median P(alive)', pct(r.p_alive.quantiles.p50)) : nothing}
        </div>
        ${r.clv
          ? html`<h3>CLV, log-spaced bins</h3>${histogram('Profiles by CLV', r.clv, (v) => num(v))}${quantiles('CLV quantiles', r.clv, money)}`
          : html`<p class="muted">No profile holds a CLV: the latest fit had no spend model (its warnings say why).</p>`}
        ${r.p_alive ? html`<h3>P(alive)</h3>${histogram('Profiles by P(alive)', r.p_alive, (v) => pct(v, 0))}${quantiles('P(alive) quantiles', r.p_alive, (v) => pct(v))}` : nothing}`))}

      ${section('h-silent', 'Silent majority by cohort', missingOr(d.silent, noClvAgain, (r) => html`
        <p>${num(r.total.probably_gone)} of ${num(r.total.customers)} customers (${pct(r.total.share_gone)}) are probably gone (P(alive) below ${r.threshold}); they brought ${pct(r.total.revenue_share_gone)} of revenue.</p>
        ${r.cohorts.length === 0 ? nothing : chart({
          label: `Share of customers probably gone by cohort: ${r.cohorts.map((c) => `${c.cohort} ${pct(c.share_gone)}`).join(', ')}`,
          x: r.cohorts.map((_, i) => i),
          xLabels: r.cohorts.map((c) => c.cohort),
          bars: true,
          series: [{ label: 'share gone', values: r.cohorts.map((c) => c.share_gone) }],
        })}
        ${table('Silent majority by cohort', [
          ['Cohort', (c) => c.cohort], ['Customers', (c) => num(c.customers)], ['Probably gone', (c) => num(c.probably_gone)],
          ['Share gone', (c) => pct(c.share_gone)], ['Revenue', (c) => money(c.revenue)], ['Revenue gone', (c) => money(c.revenue_gone)],
        ], [...r.cohorts, r.total])}`))}

      ${section('h-surveys', 'Surveys', html`
        ${missingOr(d.nps, nothing, (r) => surveyView('NPS', r, (m) => m.nps))}
        ${missingOr(d.ces, nothing, (r) => surveyView('CES', r, (m) => m.mean))}
        ${missingOr(d.csat, nothing, (r) => surveyView('CSAT', r, (m) => m.csat))}`)}

      ${section('h-growth', 'Earned growth', missingOr(d.growth, nothing, (r) => {
        const rows = r.periods || [];
        if (rows.length === 0) return empty(`No period to report: ${r.note || 'no purchase yet.'}`, html`Send <code>${r.read.purchase_event}</code> events with <code>${r.read.revenue_property}</code>; say why a customer came with <code>${r.read.reason_property}</code> on <code>${r.read.survey_event}</code>.`);
        return html`${r.note ? html`<p class="muted">${prose(r.note)}</p>` : nothing}
          ${chart({
            label: `Net revenue retention and earned growth rate per ${r.period}: ${rows.map((p) => `${p.period} NRR ${pct(p.nrr)} EGR ${pct(p.egr)}`).join(', ')}`,
            xTime: true,
            x: rows.map((p) => unix(p.period)),
            series: [
              { label: 'NRR', values: rows.map((p) => p.nrr ?? null) },
              { label: 'earned new share', values: rows.map((p) => p.earned_new_share ?? null) },
              { label: 'EGR', values: rows.map((p) => p.egr ?? null) },
            ],
          })}
          ${table('Earned growth per period', [
            ['Period', (p) => html`${p.period}${p.complete ? '' : ' (running)'}`], ['NRR', (p) => pct(p.nrr)],
            ['Earned new share', (p) => pct(p.earned_new_share)], ['EGR', (p) => pct(p.egr)], ['Note', (p) => prose(p.error ?? '')],
          ], rows)}`;
      }))}

      ${section('h-health', 'Health', missingOr(d.healthReport, empty('No health run yet.', html`Press <strong>Fit health</strong>, or run <code>rapport fit health</code> (after a CLV fit: health reads P(alive)).`), (r) => {
        const bands = Object.entries(r.bands || {});
        const alerts = d.alerts.data || [];
        const renewals = alerts.filter((a) => a.kind === 'renewal_at_risk');
        return html`<div class="stats">${stat('Profiles scored', num(r.profiles_scored), `mean ${num(r.mean_score)}`)}${stat('Alerts raised', num(r.alerts_raised), html`run of ${when(r.fitted_at)}`)}</div>
          ${bands.length === 0 ? nothing : chart({
            label: `Profiles per health band: ${bands.map(([b, n]) => `${b} ${n}`).join(', ')}`,
            x: bands.map((_, i) => i), xLabels: bands.map(([b]) => b), bars: true,
            series: [{ label: 'profiles', values: bands.map(([, n]) => n) }],
          })}
          <h3>Renewals at risk</h3>
          ${table('Renewals at risk', [
            ['Profile', (a) => html`<a href=${profileHref(a.profile)}>${a.profile}</a>`], ['Score', (a) => num(a.score)],
            ['Band', (a) => a.band], ['Why', (a) => a.reason], ['When', (a) => when(a.at)],
          ], renewals, 'No renewal at risk.')}
          <h3>Alerts, newest first</h3>
          ${d.alerts.error ? errorBox(d.alerts.error) : table('Health alerts, newest first', [
            ['When', (a) => when(a.at)], ['Profile', (a) => html`<a href=${profileHref(a.profile)}>${a.profile}</a>`],
            ['Alert', (a) => a.kind], ['Band', (a) => `${a.previous_band ?? '—'} → ${a.band}`], ['Why', (a) => a.reason],
          ], alerts.slice(0, 50), 'No alert yet.')}`;
      }))}

      ${section('h-fits', 'Latest fits', html`
        <h3>CLV</h3>${missingOr(d.clv, noClvAgain, (f) => {
          const h = f.holdout;
          return html`<p>${f.purchase_model}${f.spend_model ? ` + ${f.spend_model}` : ''}, fitted ${when(f.fitted_at)} on ${num(f.customers)} customers (${num(f.repeat_customers)} repeat), ${num(f.transactions)} transactions.</p>
            <p>Parameters: ${Object.entries(f.params).filter(([, v]) => v !== null).map(([k, v]) => html`<code>${k} = ${num(v)}</code> `)}</p>
            ${!h ? html`<p class="muted">No held-out check (holdout_days = 0).</p>`
              : h.error ? html`<p class="error">The held-out check could not run: ${prose(h.error)}</p>`
                : html`<p>Held out the last ${h.days} days: predicted <strong>${num(h.predicted_purchases)}</strong> purchases, actual <strong>${num(h.actual_purchases)}</strong> (MAE ${num(h.mae)}, RMSE ${num(h.rmse)} per customer).</p>
                  ${h.by_frequency.length === 0 ? nothing : chart({
                    label: `Held-out purchases per customer by repeat purchases: ${h.by_frequency.map((b) => `${b.frequency}: predicted ${num(b.predicted_mean)}, actual ${num(b.actual_mean)}`).join('; ')}`,
                    x: h.by_frequency.map((b) => b.frequency), xLabel: 'repeat purchases',
                    series: [{ label: 'predicted', values: h.by_frequency.map((b) => b.predicted_mean) }, { label: 'actual', values: h.by_frequency.map((b) => b.actual_mean) }],
                  })}`}`;
        })}
        <h3>Churn</h3>${missingOr(d.churn, empty('No churn fit yet.', html`Press <strong>Fit churn</strong>, or run <code>rapport fit churn</code>: it needs 50 customers active long enough ago, 10 of whom churned.`), (f) => html`
          <p>${f.algorithm}, fitted ${when(f.fitted_at)}: held-out AUC <strong data-testid="churn-auc">${num(f.auc)}</strong> on ${num(f.report.n_test)} customers; ${num(f.profiles_scored)} profiles scored.</p>
          ${table('Churn feature weights', [['Feature', (w) => w.feature], ['Weight', (w) => num(w.weight)]], f.report.feature_weights)}`)}
        <h3>Health</h3>${missingOr(d.health, empty('No health fit yet.', html`Press <strong>Fit health</strong>, or run <code>rapport fit health</code>.`), (f) => html`
          <p>Run ${when(f.fitted_at)}: ${num(f.profiles_scored)} of ${num(f.profiles_read)} profiles scored, ${num(f.profiles_without_signals)} without enough inputs.</p>
          ${table('Health inputs known', [['Input', ([k]) => k], ['Profiles that have it', ([, n]) => num(n)]], Object.entries(f.inputs_known || {}))}`)}`)}`;
  },
};
