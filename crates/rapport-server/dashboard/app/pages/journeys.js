// Journeys: every journey with its state, live version and how many customers are inside
// now (the flow's `active`, summed over its versions), and a definition editor to create
// one, checked while typed by `POST /api/v1/journeys/check`.
import { api } from '../api.js';
import { html, nothing, table, num, empty } from '../ui.js';
import { DOCS, definitionForm } from '../check.js';

/** A small journey to start from: its shape is docs/journeys.md's "A definition". */
const EXAMPLE = {
  name: 'welcome',
  entry: { type: 'event', condition: 'event == "Signed Up"' },
  start: 'wait_a_day',
  nodes: {
    wait_a_day: { type: 'wait', duration: '1d', next: 'mark' },
    mark: { type: 'set_trait', trait: 'welcomed', value: true },
  },
};

/**
 * The editor of a journey's definition, checked while typed by `POST /api/v1/journeys/check`
 * (docs/journeys.md, "A definition"); `save(spec)` saves it and says what it did.
 */
export function definitionEditor(ctx, { id, legend, spec, submit, save }) {
  return definitionForm(ctx, {
    id,
    legend,
    spec,
    submit,
    save,
    rows: 18,
    checkPath: '/api/v1/journeys/check',
    help: html`The entry, the start and the steps (<code>nodes</code>) by name, as
      <a href="${DOCS}/journeys.md#a-definition">docs/journeys.md, “A definition”</a> describes.
      Checked while you type against the segments, computed traits and destinations that exist now.`,
  });
}

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
    const can = ctx.can('configure');
    return html`<h1>Journeys</h1>
      ${journeys.length === 0
        ? empty('No journey yet.', can
          ? html`Write its definition below (an example is filled in), create it, then publish it from its page.`
          : html`Write a definition (its shape is in <code>docs/journeys.md</code>; the routes in the <a href="/docs">API reference</a>), then
            <code>rapport journeys create --file cart.json</code> (or <code>POST /api/v1/journeys</code>) and
            <code>rapport journeys publish NAME</code>, with a key holding <code>configure</code>.`)
        : table('Journeys', [
            ['Journey', (j) => html`<a href="#/journeys/${encodeURIComponent(j.name)}">${j.name}</a>`],
            ['State', (j) => html`<span class="badge state-${j.status}">${j.status}</span>`],
            ['Live version', (j) => (j.live_version ?? '—')],
            ['Versions', (j) => num(j.versions.length)],
            ['Inside now', (j) => html`<span data-testid="inside-${j.name}">${num(inside(j))}</span>`],
            ['Entered', (j) => num(j.flow ? j.flow.versions.reduce((n, v) => n + v.entered + v.holdout_entered, 0) : null)],
          ], journeys)}
      ${can
        ? html`<section aria-labelledby="h-new-journey"><h2 id="h-new-journey">New journey</h2>
            <p class="muted">Creating saves version 1 as a draft: nothing runs until it is published from the journey's page.</p>
            ${definitionEditor(ctx, {
              id: 'new-journey',
              legend: 'Definition of the new journey',
              spec: EXAMPLE,
              submit: 'Create journey',
              save: async (spec) => {
                const j = await api('/api/v1/journeys', { method: 'POST', body: spec });
                ctx.go(`/journeys/${encodeURIComponent(j.name)}`);
              },
            })}
          </section>`
        : nothing}`;
  },
};
