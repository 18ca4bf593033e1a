// Destinations: every destination with its kind, its state and its delivery at a glance
// (the last 24 hours of its overview; retrying and dead letters as they stand now), and a
// definition editor to create one.
import { api } from '../api.js';
import { html, nothing, table, num, empty } from '../ui.js';
import { DOCS, definitionForm } from '../check.js';

/** A webhook to start from (docs/destinations.md, "Defining one"). */
const EXAMPLE = {
  name: 'crm',
  kind: { type: 'webhook', url: 'https://crm.example.com/hooks/rapport' },
  deliver: { events: { types: ['track', 'identify'] } },
};

/**
 * Whether the signed-in key may define destinations: `configure` and `read` (a destination
 * receives personal data unmasked, so a `read_masked` key may not point one anywhere).
 */
export function canDefine(ctx) {
  return ctx.can('configure') && ctx.can('read');
}

/**
 * The editor of a destination's definition (docs/destinations.md, "Defining one"): its
 * JSON checked while typed, the rest by the API on saving; `save(spec)` saves it and says
 * what it did.
 */
export function destinationEditor(ctx, { id, legend, spec, submit, save, note, refill }) {
  return definitionForm(ctx, {
    id,
    legend,
    spec,
    submit,
    save,
    rows: 14,
    refill,
    checkPath: null,
    help: html`Its <code>name</code>, <code>kind</code> (webhook, forward or warehouse), which messages it gets
      (<code>deliver</code>) and how (<code>delivery</code>), as <a href="${DOCS}/destinations.md#defining-one">docs/destinations.md, “Defining one”</a> describes.
      ${note || nothing}`,
  });
}

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
    const s = ctx.state;
    const can = canDefine(ctx);
    const total = (d, k) => (d.overview ? d.overview.total[k] : null);
    return html`<h1>Destinations</h1>
      ${ctx.query.deleted && !s.created ? html`<p class="notice" role="status" data-testid="deleted">Destination ${ctx.query.deleted} deleted, with its retries and dead letters.</p>` : nothing}
      ${s.created
        ? html`<div class="notice" role="status" data-testid="created"><p>Destination <a href="#/destinations/${encodeURIComponent(s.created.name)}">${s.created.name}</a> created: it receives what is logged from now on.</p>
            ${s.created.secret ? html`<p>Its signing secret is shown this once (later: <code>GET …/secret</code>); copy it to the receiver now:</p><p><code class="secret">${s.created.secret}</code></p>` : nothing}</div>`
        : nothing}
      ${destinations.length === 0
        ? empty('No destination yet.', can
          ? html`Define one below (an example webhook is filled in): it receives what is logged from then on.`
          : html`Create one with <code>rapport destinations create --file crm.json</code> or
            <code>POST /api/v1/destinations</code> (the definition is in <code>docs/destinations.md</code>; the routes in the <a href="/docs">API reference</a>), with a key holding <code>configure</code> and <code>read</code>.`)
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
          ], destinations)}`}
      ${can
        ? html`<section aria-labelledby="h-new-destination"><h2 id="h-new-destination">New destination</h2>
            ${destinationEditor(ctx, {
              id: 'new-destination',
              legend: 'Definition of the new destination',
              spec: EXAMPLE,
              submit: 'Create destination',
              note: 'A webhook created without a secret gets one, shown here once.',
              refill: true,
              save: async (spec) => {
                const out = await api('/api/v1/destinations', { method: 'POST', body: spec });
                s.created = { name: out.destination.spec.name, secret: out.secret };
                await ctx.reload();
                return null; // the notice above says it
              },
            })}
          </section>`
        : nothing}`;
  },
};
