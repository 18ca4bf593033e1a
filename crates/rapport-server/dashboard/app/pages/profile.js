// The profile 360°: who the customer is (identifiers, and why they were merged, told as a
// story), what is known (traits, computed traits, consent), where they stand (segments,
// value scores), and what they did (the timeline, paged).
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, pairs, value, json, num, pct, profileHref } from '../ui.js';

const id = (i) => (i ? `${i.type}:${i.value}` : '?');

/** One line of the identity story, in words. */
export function storyLine(h) {
  switch (h.event) {
    case 'profile_created':
      return html`The profile <code>${h.profile}</code> was created for an event with no known identifier.`;
    case 'identifier_added':
      return html`<code>${id(h.identifier)}</code> was added, from the event's <code>${h.source}</code>.`;
    case 'profile_merged':
      return html`Profile <code>${h.from}</code> was merged in: an event carried <code>${id(h.linked_by)}</code> (theirs)
        together with <code>${id(h.anchored_by)}</code> (this profile's)${h.reason
          ? html`, decided by ${h.reason.kind} (${h.reason.decided_by}, probability ${pct(h.reason.probability)})`
          : nothing}.`;
    case 'merged_into':
      return html`<code>${h.profile}</code> was merged into <code>${h.into}</code>, linked by <code>${id(h.linked_by)}</code>.`;
    case 'identifier_refused':
      return html`<code>${id(h.identifier)}</code> from <code>${h.source}</code> was refused: ${(h.reason || '').replaceAll('_', ' ')}${h.limit ? ` (limit ${h.limit})` : ''}.`;
    case 'merge_refused':
      return html`A merge with <code>${h.other}</code> through <code>${id(h.identifier)}</code> was refused: it would exceed the limit of ${h.limit} ${h.conflict}.`;
    case 'account_linked':
      return html`Joined the account <code>${h.account_id}</code>.`;
    default:
      return html`${h.event}: ${value(h)}`;
  }
}

function timelineEntry(e) {
  const what = e.type === 'track' ? e.event
    : e.type === 'page' || e.type === 'screen' ? `${e.type}: ${e.name || e.properties?.path || ''}`
      : e.type === 'identify' ? 'identify'
        : e.type || e.kind || e.event || 'entry';
  return html`<li>
    <details>
      <summary><span class="when">${when(e.timestamp || e.at)}</span> <span class="badge">${e.type || e.kind || 'step'}</span> ${what}</summary>
      ${json(e)}
    </details>
  </li>`;
}

async function timeline(ref, cursor) {
  return api(`/api/v1/profiles/${encodeURIComponent(ref)}/events`, { query: { limit: 25, cursor } });
}

export default {
  title: 'Profile',
  async load(ctx) {
    const ref = encodeURIComponent(ctx.params.ref);
    const [p, identity, events, sources] = await Promise.all([
      api(`/api/v1/profiles/${ref}`),
      api(`/api/v1/profiles/${ref}/identity`),
      timeline(ctx.params.ref),
      api('/api/v1/sources'),
    ]);
    ctx.state.events = events.data;
    ctx.state.next = events.next_cursor;
    return { p, identity, sources: sources.data };
  },
  view(ctx) {
    const { p, identity, sources } = ctx.data;
    // Consent names what decided it: a source by id (shown by name), or `api`.
    const decidedBy = (src) => (src === 'api' ? 'the API' : sources.find((s) => s.id === src)?.name || src);
    const more = async () => {
      try {
        const page = await timeline(ctx.params.ref, ctx.state.next);
        ctx.state.events = [...ctx.state.events, ...page.data];
        ctx.state.next = page.next_cursor;
      } catch (err) {
        ctx.state.error = err;
      }
      ctx.update();
    };
    const heading = p.traits.name || p.traits.email || id(p.identifiers[0]) || p.id;
    const scores = Object.entries(p.scores || {});
    return html`<h1>${heading}</h1>
      <p class="muted">Profile <code>${p.id}</code> · first seen ${when(p.first_seen)} · last seen ${when(p.last_seen)}
        ${p.merged_from.length ? html` · merged from ${p.merged_from.length} other profile${p.merged_from.length > 1 ? 's' : ''}` : nothing}</p>
      <div class="grid">
        <section aria-labelledby="h-ids"><h2 id="h-ids">Identifiers</h2>
          ${table('Identifiers', [
            ['Type', (i) => i.type],
            ['Value', (i) => i.value],
            ['First seen', (i) => when(i.first_seen)],
            ['Last seen', (i) => when(i.last_seen)],
          ], p.identifiers, 'No identifier.')}
        </section>
        <section aria-labelledby="h-traits"><h2 id="h-traits">Traits</h2>${pairs('Traits', p.traits)}</section>
        <section aria-labelledby="h-computed"><h2 id="h-computed">Computed traits</h2>${pairs('Computed traits', p.computed)}</section>
        <section aria-labelledby="h-segments"><h2 id="h-segments">Segments</h2>
          ${table('Segment memberships', [
            ['Segment', (m) => html`<a href="#/segments/${encodeURIComponent(m.segment)}">${m.segment}</a>`],
            ['Entered', (m) => when(m.entered_at)],
          ], p.segments, 'In no segment.')}
        </section>
        <section aria-labelledby="h-scores"><h2 id="h-scores">Value scores</h2>
          ${scores.length === 0
            ? html`<p class="muted">No score yet: the value models score profiles when they are fitted (Value page).</p>`
            : html`<dl class="pairs">${scores.map(([k, v]) => html`<div><dt>${k}</dt><dd>${typeof v === 'number' ? num(v) : value(v)}</dd></div>`)}</dl>`}
        </section>
        <section aria-labelledby="h-consent"><h2 id="h-consent">Consent</h2>
          ${table('Consent per purpose', [
            ['Purpose', ([k]) => k],
            ['Decision', ([, c]) => (c.granted ? 'granted' : 'denied')],
            ['When', ([, c]) => when(c.at)],
            ['From', ([, c]) => decidedBy(c.source)],
          ], Object.entries(p.consent || {}), 'No consent recorded: purposes are undecided.')}
        </section>
        ${p.accounts.length
          ? html`<section aria-labelledby="h-accounts"><h2 id="h-accounts">Accounts</h2>
              ${table('Accounts', [['Account', (a) => a.id], ['Traits', (a) => value(a.traits)]], p.accounts)}</section>`
          : nothing}
      </div>
      <section aria-labelledby="h-story"><h2 id="h-story">How this profile was assembled</h2>
        <ol class="story">${identity.history.map((h) => html`<li><span class="when">${when(h.at)}</span> ${storyLine(h)}</li>`)}</ol>
      </section>
      <section aria-labelledby="h-timeline"><h2 id="h-timeline">Timeline</h2>
        ${errorBox(ctx.state.error)}
        ${ctx.state.events.length === 0
          ? html`<p class="muted">No event on the timeline.</p>`
          : html`<ol class="timeline">${ctx.state.events.map(timelineEntry)}</ol>`}
        ${ctx.state.next ? html`<button @click=${more}>Older events</button>` : nothing}
      </section>
      <p><a href=${profileHref(p.id)}>Permalink</a> · <a href="#/profiles">Back to search</a></p>`;
  },
};
