// Journeys: every journey with its state, live version and how many customers are inside
// now (the flow's `active`, summed over its versions), a definition editor to create one,
// checked while typed by `POST /api/v1/journeys/check`, and the frequency caps across
// journeys.
import { api } from '../api.js';
import { html, nothing, table, num, empty, errorBox, when } from '../ui.js';
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
 * (docs/journeys.md, "A definition") as a new journey or, with `draft`, as the next draft of
 * the journey it names; `save(spec)` saves it and says what it did.
 */
export function definitionEditor(ctx, { id, legend, spec, submit, save, draft = false }) {
  return definitionForm(ctx, {
    id,
    legend,
    spec,
    submit,
    save,
    rows: 18,
    checkPath: `/api/v1/journeys/check?as=${draft ? 'draft' : 'create'}`,
    help: html`The entry, the start and the steps (<code>nodes</code>) by name, as
      <a href="${DOCS}/journeys.md#a-definition">docs/journeys.md, “A definition”</a> describes.
      Checked while you type against the segments, computed traits and destinations that exist now.`,
  });
}

/**
 * The frequency caps across journeys (`GET`/`PUT /api/v1/journeys/caps`): the caps in force,
 * and for a `configure` key an editor of the rows, saved whole; a problem is shown at the
 * row and part its field names (`caps[1].per`).
 */
function capsSection(ctx, caps) {
  const s = ctx.state;
  const can = ctx.can('configure');
  const rows = (s.caps ??= caps.caps.map((c) => ({ ...c })));
  const err = s.capsError;
  const at = (i, part) => err && err.field === `caps[${i}].${part}`;
  const change = (e) => {
    const el = e.target;
    const i = Number(el.dataset.row);
    if (!Number.isInteger(i) || !el.dataset.part) return;
    rows[i][el.dataset.part] = el.dataset.part === 'max' ? Number(el.value) : el.value;
    s.capsError = null;
  };
  const add = () => {
    rows.push({ tag: 'email', max: 3, per: '7d' });
    ctx.update();
  };
  const remove = (i) => () => {
    rows.splice(i, 1);
    ctx.update();
  };
  const save = async (e) => {
    e.preventDefault();
    s.capsError = null;
    s.capsDone = null;
    try {
      const r = await api('/api/v1/journeys/caps', { method: 'PUT', body: { caps: rows } });
      s.capsDone = r.status === 'pending'
        ? `Saved (request ${r.request}); the processor puts the caps in force in a moment.`
        : rows.length ? 'The caps are in force.' : 'No cap is in force any more.';
      s.caps = null;
      await ctx.reload();
    } catch (error) {
      s.capsError = error;
      ctx.update();
    }
  };
  const input = (i, part, label, attrs) => html`<label class="visually-hidden" for="cap-${i}-${part}">${label} of cap ${i + 1}</label>
    <input id="cap-${i}-${part}" data-row=${i} data-part=${part} .value=${String(rows[i][part])} aria-invalid=${at(i, part) ? 'true' : 'false'}
      type=${attrs.type || 'text'} min=${attrs.min ?? nothing} required placeholder=${attrs.placeholder || ''}>`;
  return html`<section aria-labelledby="h-caps"><h2 id="h-caps">Frequency caps across journeys</h2>
    <p class="muted">At most <em>max</em> messages of a channel tag (<code>*</code>: every message) per customer in any window of <em>per</em> (<code>7d</code>, <code>12h</code>), across all journeys; transactional messages bypass them, and a journey of higher priority takes the last place under a cap.
      ${caps.updated_at ? html`Set ${when(caps.updated_at)}.` : nothing}</p>
    ${can
      ? html`<form class="stack" @submit=${save} @input=${change} aria-labelledby="h-caps">
          ${rows.length
            ? html`<table><caption class="visually-hidden">Caps</caption>
                <thead><tr><th scope="col">Tag</th><th scope="col">Max</th><th scope="col">Per</th><th scope="col"></th></tr></thead>
                <tbody>${rows.map((_, i) => html`<tr class=${err && (err.field || '').startsWith(`caps[${i}]`) ? 'invalid' : ''} data-testid="cap-${i}">
                  <td>${input(i, 'tag', 'Tag', { placeholder: 'email' })}</td>
                  <td>${input(i, 'max', 'Max', { type: 'number', min: 0 })}</td>
                  <td>${input(i, 'per', 'Per', { placeholder: '7d' })}</td>
                  <td><button type="button" class="link" @click=${remove(i)} aria-label="Remove cap ${i + 1}">Remove</button></td>
                </tr>`)}</tbody></table>`
            : html`<p class="muted">No cap is set: a customer may get every message their journeys send.</p>`}
          ${errorBox(err)}
          ${s.capsDone && !err ? html`<p class="notice" role="status" data-testid="caps-done">${s.capsDone}</p>` : nothing}
          <div><button type="button" @click=${add}>Add a cap</button> <button type="submit">Save the caps</button></div>
        </form>`
      : table('Caps in force', [
          ['Tag', (c) => html`<code>${c.tag}</code>`],
          ['Max', (c) => num(c.max)],
          ['Per', (c) => c.per],
        ], caps.caps, 'No cap is set.')}
  </section>`;
}

export default {
  title: 'Journeys',
  async load() {
    const [journeys, caps] = await Promise.all([api('/api/v1/journeys'), api('/api/v1/journeys/caps')]);
    const list = journeys.data || journeys;
    const flows = await Promise.all(
      list.map((j) => api(`/api/v1/journeys/${encodeURIComponent(j.name)}/flow`).catch(() => null)),
    );
    return { journeys: list.map((j, i) => ({ ...j, flow: flows[i] })), caps };
  },
  view(ctx) {
    const { journeys, caps } = ctx.data;
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
        : nothing}
      ${capsSection(ctx, caps)}`;
  },
};
