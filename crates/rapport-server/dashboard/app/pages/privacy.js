// Privacy: consent across profiles, deletion requests with their receipts (what each store
// removed), a form to delete a person, the suppression list, and which names count as
// personal data.
//
// Consent across profiles is counted by segments (`consent.<purpose> == true`): the
// processor keeps their sizes exact in real time and their size history, so this page
// reads a count rather than scanning every profile. A purpose without its segment is
// offered one; the segment's own page shows its history and members.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, num, field, empty } from '../ui.js';

const PURPOSE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The purpose a segment counts, when its expression is exactly `consent.<purpose> == true`. */
export function purposeOf(expression) {
  const m = /^\s*consent\.([A-Za-z_][A-Za-z0-9_]*)\s*(?:==\s*true\s*)?$/.exec(expression || '');
  return m ? m[1] : null;
}

/** Every purpose the configuration names: destinations' consent rules, journeys' send steps. */
function namedPurposes(destinations, journeys) {
  const out = new Map();
  const add = (purpose, by) => {
    if (!out.has(purpose)) out.set(purpose, new Set());
    out.get(purpose).add(by);
  };
  for (const d of destinations) for (const p of d.spec?.consent?.purposes || []) add(p, `destination ${d.spec.name}`);
  for (const j of journeys) {
    for (const v of j.versions || []) {
      for (const n of Object.values(v.spec?.nodes || {})) if (n.type === 'send' && n.consent) add(n.consent, `journey ${j.name}`);
    }
  }
  return out;
}

export default {
  title: 'Privacy',
  async load() {
    const [deletions, suppressions, personal, segments, destinations, journeys] = await Promise.all([
      api('/api/v1/privacy/deletions'),
      api('/api/v1/privacy/suppressions'),
      api('/api/v1/privacy/personal-data'),
      api('/api/v1/segments'),
      api('/api/v1/destinations'),
      api('/api/v1/journeys'),
    ]);
    return {
      deletions: deletions.data,
      suppressions: suppressions.data,
      personal,
      segments: segments.data,
      destinations: destinations.data,
      journeys: journeys.data,
    };
  },
  started(ctx) {
    // A deletion runs for seconds to minutes, so does a new purpose's first count: follow
    // them until done.
    ctx.every(2000, () => {
      const d = ctx.data;
      if (!d) return;
      const deleting = d.deletions.some((x) => !['done', 'failed'].includes(x.status));
      const counting = d.segments.some((x) => purposeOf(x.expression) && x.backfill?.state !== 'done');
      if (deleting || counting) ctx.reload();
    });
  },
  view(ctx) {
    const { deletions, suppressions, personal, segments, destinations, journeys } = ctx.data;
    const s = ctx.state;
    const can = ctx.can('delete');
    const canConfigure = ctx.can('configure');
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
    const counted = new Map();
    for (const seg of segments) {
      const p = purposeOf(seg.expression);
      if (p && !counted.has(p)) counted.set(p, seg);
    }
    const named = namedPurposes(destinations, journeys);
    const purposes = [...new Set([...counted.keys(), ...named.keys()])].sort();
    const count = (purpose) => act(async () => {
      if (!PURPOSE.test(purpose)) {
        throw new Error(`"${purpose}" cannot be counted here: a purpose counted by a segment is letters, digits and _`);
      }
      await api('/api/v1/segments', {
        method: 'POST',
        body: {
          name: `consent_${purpose}`.toLowerCase(),
          expression: `consent.${purpose} == true`,
          description: `Profiles whose current decision for the consent purpose ${purpose} is granted.`,
        },
      });
      s.done = `Counting who granted ${purpose}: existing profiles are evaluated in the background.`;
    });
    const countTyped = (e) => count(field(e.target, 'purpose'))(e);
    const granted = (p) => {
      const seg = counted.get(p);
      if (!seg) return '—';
      if (seg.backfill?.state !== 'done') return html`${num(seg.size)} <span class="muted">(evaluating existing profiles)</span>`;
      return num(seg.size);
    };
    return html`<h1>Privacy</h1>
      ${errorBox(s.error)}
      ${s.done && !s.error ? html`<p class="notice" role="status">${s.done}</p>` : nothing}
      <section aria-labelledby="h-consent"><h2 id="h-consent">Consent across profiles</h2>
        <p class="muted">Profiles whose current decision for each purpose is <em>granted</em>, counted in real time by a segment <code>consent.&lt;purpose&gt; == true</code>; every other profile denied it or never decided. Each profile's own decisions and their history are on its page.</p>
        ${table('Consent per purpose', [
          ['Purpose', (p) => html`<code>${p}</code>`],
          ['Granted', (p) => html`<span data-testid=${`granted-${p}`}>${granted(p)}</span>`],
          ['Named by', (p) => [...(named.get(p) || [])].join(', ') || '—'],
          ['', (p) => (counted.has(p)
            ? html`<a href=${`#/segments/${encodeURIComponent(counted.get(p).name)}`}>History and members</a>`
            : canConfigure
              ? html`<button @click=${count(p)}>Count who granted ${p}</button>`
              : nothing)],
        ], purposes, 'No purpose is counted or named yet.')}
        ${canConfigure
          ? html`<form class="inline" @submit=${countTyped}>
              <label for="consent-purpose">Count another purpose</label>
              <input id="consent-purpose" name="purpose" required pattern="[A-Za-z_][A-Za-z0-9_]*" placeholder="marketing">
              <button type="submit">Count</button>
            </form>`
          : nothing}
      </section>
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
