// Privacy: deletion requests with their receipts (what each store removed), a form to
// delete a person, the suppression list, and which names count as personal data.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, num, field, empty } from '../ui.js';

export default {
  title: 'Privacy',
  async load() {
    const [deletions, suppressions, personal] = await Promise.all([
      api('/api/v1/privacy/deletions'),
      api('/api/v1/privacy/suppressions'),
      api('/api/v1/privacy/personal-data'),
    ]);
    return { deletions: deletions.data, suppressions: suppressions.data, personal };
  },
  started(ctx) {
    // A deletion runs for seconds to minutes: follow it until every request is done.
    ctx.every(2000, () => {
      if (ctx.data?.deletions?.some((d) => !['done', 'failed'].includes(d.status))) ctx.reload();
    });
  },
  view(ctx) {
    const { deletions, suppressions, personal } = ctx.data;
    const s = ctx.state;
    const can = ctx.can('delete');
    const act = (f) => async (e) => {
      e.preventDefault();
      s.error = null;
      try {
        await f(e);
        await ctx.reload();
      } catch (err) {
        s.error = err;
        ctx.update();
      }
    };
    const identifiers = (text) => text.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
    const remove = act(async (e) => {
      const ids = identifiers(field(e.target, 'identifiers'));
      const suppress = e.target.elements.namedItem('suppress').checked;
      if (!confirm(`Delete everything about ${ids.join(', ')}? This cannot be undone.`)) return;
      const d = await api('/api/v1/privacy/deletions', { method: 'POST', body: { identifiers: ids, suppress } });
      s.done = `Deletion ${d.id} requested.`;
      e.target.reset();
    });
    const suppress = act(async (e) => {
      await api('/api/v1/privacy/suppressions', {
        method: 'POST',
        body: { identifier: field(e.target, 'identifier'), reason: field(e.target, 'reason') || undefined },
      });
      s.done = 'Suppressed: their new events are dropped and nothing about them is delivered.';
      e.target.reset();
    });
    const lift = (x) => act(async () => {
      if (!confirm('Lift this suppression? Their events will be collected and delivered again.')) return;
      await api(`/api/v1/privacy/suppressions/${encodeURIComponent(x.hash)}`, { method: 'DELETE' });
      s.done = 'Suppression lifted.';
    });
    return html`<h1>Privacy</h1>
      ${errorBox(s.error)}
      ${s.done && !s.error ? html`<p class="notice" role="status">${s.done}</p>` : nothing}
      <section aria-labelledby="h-deletions"><h2 id="h-deletions">Deletion requests</h2>
        ${deletions.length === 0
          ? empty('No deletion requested.', 'A person who asks to be forgotten is deleted here, with rapport privacy delete, or POST /api/v1/privacy/deletions.')
          : deletions.map((d) => html`<details class="deletion">
              <summary><code>${d.id}</code> · ${d.kind} · <strong>${d.status}</strong> · requested ${when(d.requested_at)}${d.finished_at ? html` · finished ${when(d.finished_at)}` : nothing}</summary>
              ${d.error ? html`<p class="error">${d.error}</p>` : nothing}
              <p class="muted">${d.kind === 'events' ? html`Source ${d.source}, received from ${when(d.from)} to ${when(d.to)}.` : html`Subjects (SHA-256): ${d.subject_hashes.map((h) => html`<code>${h.slice(0, 12)}…</code> `)}${d.suppress ? ' · suppressed too' : ''}`}</p>
              ${table(`Receipt of ${d.id}`, [
                ['Store', (l) => l.store],
                ['Removed', (l) => num(l.removed)],
                ['Detail', (l) => l.detail ?? ''],
              ], d.receipt, 'No receipt yet: the request is still running.')}
            </details>`)}
        ${can
          ? html`<form class="stack" @submit=${remove}>
              <fieldset><legend>Delete a person</legend>
                <label for="del-ids">Identifiers (type:value, separated by spaces or commas)</label>
                <input id="del-ids" name="identifiers" required placeholder="email:ann@example.com user_id:42">
                <label><input type="checkbox" name="suppress"> Also suppress every identifier they were known by</label>
                <button type="submit" class="danger">Delete</button>
              </fieldset>
            </form>`
          : html`<p class="muted">Deleting needs a key with the <code>delete</code> scope.</p>`}
      </section>
      <section aria-labelledby="h-suppressions"><h2 id="h-suppressions">Suppressions</h2>
        <p class="muted">Only hashes of the identifiers are kept, so the list shows their type, not their value.</p>
        ${table('Suppressions', [
          ['Type', (x) => x.type],
          ['Hash', (x) => html`<code>${x.hash.slice(0, 16)}…</code>`],
          ['Since', (x) => when(x.created_at)],
          ['Reason', (x) => x.reason ?? '—'],
          ['From deletion', (x) => x.deletion ?? '—'],
          ['', (x) => (can ? html`<button class="danger" @click=${lift(x)} aria-label="Lift the suppression ${x.hash.slice(0, 12)}">Lift</button>` : nothing)],
        ], suppressions, 'Nobody is suppressed.')}
        ${can
          ? html`<form class="inline" @submit=${suppress}>
              <label for="sup-id">Suppress</label>
              <input id="sup-id" name="identifier" required placeholder="email:ann@example.com">
              <label for="sup-reason">Reason</label>
              <input id="sup-reason" name="reason" placeholder="no personal data here">
              <button type="submit">Suppress</button>
            </form>`
          : nothing}
      </section>
      <section aria-labelledby="h-personal"><h2 id="h-personal">Personal data</h2>
        <p class="muted">Masked in every answer to a key with the <code>read_masked</code> scope. Change with <code>PUT /api/v1/privacy/personal-data</code>.</p>
        <dl class="pairs">
          <div><dt>Traits</dt><dd>${personal.traits.join(', ') || '—'}</dd></div>
          <div><dt>Properties</dt><dd>${personal.properties.join(', ') || '—'}</dd></div>
          <div><dt>Identifier types</dt><dd>${personal.identifier_types.join(', ') || '—'}</dd></div>
        </dl>
      </section>`;
  },
};
