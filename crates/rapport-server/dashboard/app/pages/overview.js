// Overview: is the pipeline keeping up (log, indexer and processor offsets), and what needs
// attention (pipeline dead letters, health alerts).
import { api } from '../api.js';
import { html, nothing, table, when, num, stat, profileHref } from '../ui.js';

export default {
  title: 'Overview',
  async load() {
    const [health, deadLetters, alerts] = await Promise.all([
      api('/health').catch((err) => ({ status: 'unavailable', reason: err.message })),
      api('/api/v1/dead-letters', { query: { limit: 10 } }),
      api('/api/v1/alerts', { query: { limit: 100 } }),
    ]);
    return { health, deadLetters: deadLetters.data, alerts: (alerts.data || []).slice(-10).reverse() };
  },
  started(ctx) {
    ctx.every(5000, () => ctx.reload());
  },
  view(ctx) {
    const { health, deadLetters, alerts } = ctx.data;
    const lag = (to) => (health.log_offset == null || to == null ? null : health.log_offset - to);
    return html`<h1>Overview</h1>
      <div class="stats">
        ${stat('Status', html`<span class="status ${health.status}">${health.status}</span>`, (health.problems || []).join('; ') || health.reason)}
        ${stat('Events in the log', num(health.log_offset ?? 0))}
        ${stat('Indexer lag', num(lag(health.indexed_offset)), 'entries not yet searchable')}
        ${stat('Processor lag', num(lag(health.processed_offset)), 'entries not yet in profiles')}
      </div>
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
          ['Why', (a) => a.reason ?? a.message ?? ''],
        ], alerts, 'No alert: health scores are computed by the health model (Value page).')}
      </section>
      ${nothing}`;
  },
};
