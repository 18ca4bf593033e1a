// Live events: the newest events as they arrive (refreshed every 2 s while the page is
// open), filtered by source, type, name and user; each expandable; and the messages the
// tracking API refused, with their errors (of the chosen source too).
import { api } from '../api.js';
import { html, nothing, table, when, json, field, profileHref } from '../ui.js';

const TYPES = ['', 'track', 'identify', 'page', 'screen', 'group', 'alias'];

export default {
  title: 'Live events',
  async load(ctx) {
    const q = ctx.query;
    const [events, rejections, sources] = await Promise.all([
      api('/api/v1/events', {
        query: { source: q.source, type: q.type, event: q.event, userId: q.userId, anonymousId: q.anonymousId, limit: 50 },
      }),
      api('/api/v1/rejections', { query: { source: q.source, limit: 20 } }),
      api('/api/v1/sources'),
    ]);
    return { events: events.data, rejections: rejections.data, sources: sources.data };
  },
  started(ctx) {
    ctx.every(2000, () => {
      if (!ctx.state.paused) ctx.reload();
    });
  },
  view(ctx) {
    const { events, rejections, sources } = ctx.data;
    const q = ctx.query;
    const sourceName = (id) => sources.find((s) => s.id === id)?.name || id;
    const filter = (e) => {
      e.preventDefault();
      const f = e.target;
      ctx.go('/events', {
        type: field(f, 'type'),
        event: field(f, 'event'),
        userId: field(f, 'userId'),
        anonymousId: field(f, 'anonymousId'),
        source: field(f, 'source'),
      });
    };
    const pause = () => {
      ctx.state.paused = !ctx.state.paused;
      ctx.update();
    };
    return html`<h1>Live events</h1>
      <form class="inline" @submit=${filter} aria-label="Filter events">
        <label for="f-source">Source</label>
        <select id="f-source" name="source"><option value="">any</option>${sources.map((s) => html`<option value=${s.id} ?selected=${q.source === s.id}>${s.name}</option>`)}</select>
        <label for="f-type">Type</label>
        <select id="f-type" name="type">${TYPES.map((t) => html`<option value=${t} ?selected=${q.type === t}>${t || 'any'}</option>`)}</select>
        <label for="f-event">Event name</label>
        <input id="f-event" name="event" .value=${q.event || ''} placeholder="Order Completed">
        <label for="f-user">User id</label>
        <input id="f-user" name="userId" .value=${q.userId || ''}>
        <label for="f-anon">Anonymous id</label>
        <input id="f-anon" name="anonymousId" .value=${q.anonymousId || ''}>
        <button type="submit">Filter</button>
        <button type="button" class="link" @click=${pause} aria-pressed=${ctx.state.paused ? 'true' : 'false'}>${ctx.state.paused ? 'Resume' : 'Pause'} live updates</button>
      </form>
      <section aria-labelledby="h-stream"><h2 id="h-stream">Newest events</h2>
        ${events.length === 0
          ? html`<div class="empty"><p><strong>No event matches.</strong></p><p>Send events with a source's write key (Settings), or loosen the filter.</p></div>`
          : html`<ol class="timeline" aria-live="off">${events.map((e) => html`<li><details>
              <summary><span class="when">${when(e.receivedAt)}</span> <span class="badge">${e.type}</span>
                ${e.event || e.name || ''} · ${e.userId ? `user ${e.userId}` : `anonymous ${e.anonymousId ?? ''}`}
                <span class="muted">· ${sourceName(e.sourceId)}</span></summary>
              <p><a href=${profileHref(e.userId ? 'user_id:' + e.userId : 'anonymous_id:' + e.anonymousId)}>Open the profile</a></p>
              ${json(e)}
            </details></li>`)}</ol>`}
      </section>
      <section aria-labelledby="h-refused"><h2 id="h-refused">Refused messages</h2>
        <p class="muted">What this server's tracking API refused in the last hour, with the error the sender got (the messages themselves are not kept).</p>
        ${table('Refused messages', [
          ['When', (r) => when(r.at)],
          ['Source', (r) => (r.source ? r.source.name || r.source.id : 'no valid key')],
          ['Error', (r) => html`<code>${r.code}</code>${r.field ? html` <code>${r.field}</code>` : nothing}`],
          ['Message', (r) => r.message],
          ['Type / event', (r) => [r.type, r.event].filter(Boolean).join(' · ') || '—'],
          ['Path', (r) => r.path],
        ], rejections, 'Nothing refused.')}
      </section>`;
  },
};
