// Overview: events per minute by source, whether the pipeline keeps up (indexer and
// processor lag), storage, and what needs attention (refused messages, dead letters,
// health alerts).
import { api } from '../api.js';
import { html, table, when, num, stat, bytes, chart, profileHref } from '../ui.js';

export default {
  title: 'Overview',
  async load() {
    const [overview, health, deadLetters, alerts] = await Promise.all([
      api('/api/v1/overview', { query: { minutes: 60 } }),
      api('/health').catch((err) => ({ status: 'unavailable', reason: err.message })),
      api('/api/v1/dead-letters', { query: { limit: 10 } }),
      api('/api/v1/alerts', { query: { limit: 100 } }),
    ]);
    return { overview, health, deadLetters: deadLetters.data, alerts: (alerts.data || []).slice(-10).reverse() };
  },
  started(ctx) {
    ctx.every(5000, () => ctx.reload());
  },
  view(ctx) {
    const { overview: o, health, deadLetters, alerts } = ctx.data;
    const epm = o.events_per_minute;
    const start = new Date(epm.from).getTime() / 1000;
    const x = Array.from({ length: epm.minutes }, (_, i) => start + 60 * i);
    const total = epm.sources.reduce((n, s) => n + s.total, 0);
    const rejected = (o.rejected_per_minute || []).reduce((n, v) => n + v, 0);
    return html`<h1>Overview</h1>
      <div class="stats">
        ${stat('Status', html`<span class="status ${health.status}">${health.status}</span>`, (health.problems || []).join('; ') || health.reason)}
        ${stat('Events, last hour', num(total), `${num(o.log_offset)} in the log`)}
        ${stat('Indexer lag', num(o.indexer_lag), 'entries not yet searchable')}
        ${stat('Processor lag', num(o.processor_lag), 'entries not yet in profiles')}
        ${stat('Storage', bytes(o.storage_bytes))}
        ${stat('Refused, last hour', num(rejected), 'by this server')}
        ${stat('Dead letters', num(o.dead_letters), 'pipeline entries that failed')}
      </div>
      <section aria-labelledby="h-epm"><h2 id="h-epm">Events per minute, by source</h2>
        ${total === 0
          ? html`<div class="empty"><p><strong>No event in the last hour.</strong></p>
              <p>Point any Segment or RudderStack SDK at this server with a source's write key (Settings lists the sources).</p></div>`
          : chart({
              label: `Events per minute over the last hour, by source: ${epm.sources.map((s) => `${s.source_name || s.source_id} ${s.total}`).join(', ')}`,
              xTime: true,
              x,
              bars: epm.sources.length === 1,
              series: epm.sources.map((s) => ({ label: s.source_name || s.source_id, values: s.counts })),
            })}
      </section>
      <section aria-labelledby="h-dead"><h2 id="h-dead">Pipeline dead letters</h2>
        ${table('Pipeline dead letters', [
          ['Offset', (d) => d.offset],
          ['Stage', (d) => d.consumer],
          ['Error', (d) => d.error],
          ['When', (d) => when(d.at)],
        ], deadLetters, 'None: every entry of the log was processed.')}
      </section>
      <section aria-labelledby="h-alerts"><h2 id="h-alerts">Recent health alerts</h2>
        ${table('Recent health alerts', [
          ['When', (a) => when(a.at)],
          ['Profile', (a) => html`<a href=${profileHref(a.profile)}>${a.profile}</a>`],
          ['Alert', (a) => a.kind],
          ['Band', (a) => `${a.previous_band ?? '—'} → ${a.band}`],
          ['Why', (a) => a.reason],
        ], alerts, 'No alert: health scores are computed by the health model.')}
      </section>`;
  },
};
