// Journeys: every journey with its state, live version and how many customers are inside
// now (the flow's `active`, summed over its versions).
import { api } from '../api.js';
import { html, table, num, empty } from '../ui.js';

export default {
  title: 'Journeys',
  async load() {
    const journeys = await api('/api/v1/journeys');
    const list = journeys.data || journeys;
    const flows = await Promise.all(
      list.map((j) => api(`/api/v1/journeys/${encodeURIComponent(j.name)}/flow`).catch(() => null)),
    );
    return { journeys: list.map((j, i) => ({ ...j, flow: flows[i] })) };
  },
  view(ctx) {
    const { journeys } = ctx.data;
    const inside = (j) => (j.flow ? j.flow.versions.reduce((n, v) => n + v.active, 0) : null);
    return html`<h1>Journeys</h1>
      ${journeys.length === 0
        ? empty('No journey yet.', html`Write a definition (its shape is in <code>docs/journeys.md</code>; the routes in the <a href="/docs">API reference</a>), then
            <code>rapport journeys create --file cart.json</code> (or <code>POST /api/v1/journeys</code>) and
            <code>rapport journeys publish NAME</code>.`)
        : table('Journeys', [
            ['Journey', (j) => html`<a href="#/journeys/${encodeURIComponent(j.name)}">${j.name}</a>`],
            ['State', (j) => html`<span class="badge state-${j.status}">${j.status}</span>`],
            ['Live version', (j) => (j.live_version ?? '—')],
            ['Versions', (j) => num(j.versions.length)],
            ['Inside now', (j) => html`<span data-testid="inside-${j.name}">${num(inside(j))}</span>`],
            ['Entered', (j) => num(j.flow ? j.flow.versions.reduce((n, v) => n + v.entered + v.holdout_entered, 0) : null)],
          ], journeys)}`;
  },
};
