// Destinations: every destination with its kind, its state and its delivery at a glance
// (the last 24 hours of its overview; retrying and dead letters as they stand now).
import { api } from '../api.js';
import { html, table, num, empty } from '../ui.js';

/** `active`, `paused` or `suspended`, as the CLI's list says it. */
export function destinationState(d) {
  return d.paused ? 'paused' : d.delivery.suspended ? 'suspended' : 'active';
}

export default {
  title: 'Destinations',
  async load() {
    const destinations = await api('/api/v1/destinations');
    const list = destinations.data || destinations;
    const overviews = await Promise.all(
      list.map((d) => api(`/api/v1/destinations/${encodeURIComponent(d.id)}/overview`, { query: { hours: 24 } }).catch(() => null)),
    );
    return { destinations: list.map((d, i) => ({ ...d, overview: overviews[i] })) };
  },
  view(ctx) {
    const { destinations } = ctx.data;
    const total = (d, k) => (d.overview ? d.overview.total[k] : null);
    return html`<h1>Destinations</h1>
      ${destinations.length === 0
        ? empty('No destination yet.', html`Create one with <code>rapport destinations create --file crm.json</code> or
            <code>POST /api/v1/destinations</code> (the definition is in <code>docs/destinations.md</code>; the routes in the <a href="/docs">API reference</a>).`)
        : html`<p class="muted">Delivered, failed attempts and dead-lettered: the last 24 hours. Retrying and dead letters: now.</p>
          ${table('Destinations', [
            ['Destination', (d) => html`<a href="#/destinations/${encodeURIComponent(d.spec.name)}">${d.spec.name}</a>`],
            ['Kind', (d) => d.spec.kind.type],
            ['State', (d) => html`<span class="badge state-${destinationState(d)}" data-testid="state-${d.spec.name}">${destinationState(d)}</span>`],
            ['Delivered', (d) => num(total(d, 'delivered'))],
            ['Failed attempts', (d) => num(total(d, 'retried'))],
            ['Retrying', (d) => num(d.delivery.retrying)],
            ['Dead letters', (d) => html`<span class=${d.delivery.dead_lettered ? 'warn' : ''}>${num(d.delivery.dead_lettered)}</span>`],
            ['Lag', (d) => num(d.delivery.lag)],
          ], destinations)}`}`;
  },
};
