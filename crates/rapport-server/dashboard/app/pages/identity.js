// Identity: the review queue of probable duplicates — each pair side by side, with the
// evidence of every field, to accept (merge) or reject — and the identity rules in force.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, pct, num, pairs, profileHref, empty } from '../ui.js';

/** The matching job's `state` (`GET /api/v1/identity/matching`), in words. */
const MATCHING_STATE = {
  never_run: 'never run yet (start it with rapport identity match, or on a schedule from the [matching] settings)',
  running: 'running',
  done: 'done',
  failed: 'failed',
  interrupted: 'interrupted (the process running it stopped)',
};

export default {
  title: 'Identity',
  async load(ctx) {
    const [review, matching, rules] = await Promise.all([
      api('/api/v1/identity/review', { query: { limit: 50, cursor: ctx.query.cursor } }),
      api('/api/v1/identity/matching'),
      api('/api/v1/identity/rules'),
    ]);
    const chosen = review.data.find((p) => p.pair === ctx.query.pair) || review.data[0];
    let sides = null;
    if (chosen) {
      sides = await Promise.all(
        [chosen.left, chosen.right].map((id) => api(`/api/v1/profiles/${encodeURIComponent(id)}`).catch((err) => ({ id, error: err }))),
      );
    }
    return { review, matching, rules, chosen, sides };
  },
  view(ctx) {
    const { review, matching, rules, chosen, sides } = ctx.data;
    const s = ctx.state;
    const decide = (verb) => async () => {
      s.error = null;
      try {
        const out = await api(`/api/v1/identity/review/${encodeURIComponent(chosen.pair)}/${verb}`, { method: 'POST' });
        s.done = `${chosen.pair}: ${out.status}${out.outcome ? ` (${out.outcome.status || JSON.stringify(out.outcome)})` : ''}`;
        ctx.go('/identity', {});
        await ctx.reload();
      } catch (err) {
        s.error = err;
        ctx.update();
      }
    };
    const side = (p) => (p.error
      ? html`<div>${errorBox(p.error)}</div>`
      : html`<div class="side">
          <h3><a href=${profileHref(p.id)}>${p.traits.name || [p.traits.firstName, p.traits.lastName].filter(Boolean).join(' ') || p.traits.email || p.id}</a></h3>
          <p class="muted"><code>${p.id}</code> · last seen ${when(p.last_seen)}</p>
          ${table(`Identifiers of ${p.id}`, [['Type', (i) => i.type], ['Value', (i) => i.value]], p.identifiers)}
          ${pairs(`Traits of ${p.id}`, p.traits)}
        </div>`);
    return html`<h1>Identity</h1>
      <p class="muted">Matching: ${MATCHING_STATE[matching.state] || matching.state}${matching.finished_at_ms ? html`, last run finished ${when(new Date(matching.finished_at_ms).toISOString())}: ${num(matching.review ?? 0)} pairs for review, ${num(matching.matches ?? 0)} merged by themselves` : nothing}.
        Pairs above the upper threshold merge by themselves; those between the thresholds wait here for a person.</p>
      ${s.done ? html`<p role="status" class="notice">Decided ${s.done}.</p>` : nothing}
      ${errorBox(s.error)}
      <section aria-labelledby="h-queue"><h2 id="h-queue">Review queue</h2>
        ${review.data.length === 0
          ? empty('No pair waits for review.', 'Run matching (rapport identity match, or POST /api/v1/identity/matching/run) to look for probable duplicates.')
          : html`${table('Pairs waiting for review', [
              ['Pair', (p) => html`<a href="#/identity?pair=${encodeURIComponent(p.pair)}" aria-current=${p === chosen ? 'true' : nothing}>${p.pair}</a>`],
              ['Probability', (p) => pct(p.probability)],
              ['Weight', (p) => num(p.score)],
              ['Found', (p) => when(new Date(p.found_at_ms).toISOString())],
            ], review.data)}
            ${review.next_cursor ? html`<p><a href="#/identity?cursor=${encodeURIComponent(review.next_cursor)}">More pairs</a></p>` : nothing}`}
      </section>
      ${chosen
        ? html`<section aria-labelledby="h-pair"><h2 id="h-pair">Is this one person? <code>${chosen.pair}</code></h2>
            <p>Match probability <strong>${pct(chosen.probability)}</strong> (Fellegi–Sunter weight ${num(chosen.score)}).</p>
            <div class="grid">${sides.map(side)}</div>
            ${table('Evidence, field by field', [
              ['Field', (f) => f.field],
              ['Left', (f) => f.left_value ?? '—'],
              ['Right', (f) => f.right_value ?? '—'],
              ['Agreement', (f) => f.level_label],
              ['Weight', (f) => num(f.weight)],
            ], chosen.fields)}
            ${ctx.can('configure')
              ? html`<div class="actions">
                  <button @click=${decide('accept')}>Accept: merge them</button>
                  <button class="danger" @click=${decide('reject')}>Reject: keep apart</button>
                </div>`
              : html`<p class="muted">Deciding needs a key with the <code>configure</code> scope.</p>`}
          </section>`
        : nothing}
      <section aria-labelledby="h-rules"><h2 id="h-rules">Identity rules in force</h2>
        <p class="muted">Version ${rules.version ?? '—'}${rules.updated_at ? html`, saved ${when(rules.updated_at)}` : ''}. Change them with <code>rapport identity rules set FILE</code> or <code>PUT /api/v1/identity/rules</code>.</p>
        ${table('Identifier types: priority order and limits per profile', [
          ['Type', (r) => r.type],
          ['At most per profile', (r) => num(r.limit)],
        ], rules.rules.identifiers)}
        <p>Other identifier types: at most ${num(rules.rules.custom_limit)} each.
          Values never used as identifiers: ${rules.rules.blocked_values.map((v) => html`<code>${JSON.stringify(v)}</code> `)}${rules.rules.block_all_zeros ? ' and any value of zeros only' : ''}.</p>
      </section>`;
  },
};
