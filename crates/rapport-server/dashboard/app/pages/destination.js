// One destination: its hourly delivery overview as a chart, the retries pending, the
// dead-letter queue (each letter's error and bodies on demand) with replay, pause and
// resume, and a test send. The signing secret is never read here.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, num, chart, stat } from '../ui.js';
import { destinationState } from './destinations.js';

/** The replay body's list for a dead letter's feed. */
const replayField = {
  event: 'offsets',
  audience_change: 'audience_changes',
  trait_change: 'trait_changes',
  alert: 'alerts',
  journey_action: 'journey_actions',
};

const HOURS = [24, 72, 168, 744];

export default {
  title: 'Destination',
  async load(ctx) {
    const name = encodeURIComponent(ctx.params.name);
    const hours = Number(ctx.query.hours) || 24;
    const [destination, overview, retries, letters] = await Promise.all([
      api(`/api/v1/destinations/${name}`),
      api(`/api/v1/destinations/${name}/overview`, { query: { hours } }),
      api(`/api/v1/destinations/${name}/retries`),
      api(`/api/v1/destinations/${name}/dead-letters`, { query: { limit: 20, cursor: ctx.query.cursor } }),
    ]);
    return { destination, overview, retries: retries.data || retries, letters, hours };
  },
  view(ctx) {
    const { destination: d, overview, retries, letters, hours } = ctx.data;
    const s = ctx.state;
    const name = d.spec.name;
    const base = `/api/v1/destinations/${encodeURIComponent(name)}`;
    const can = ctx.can('configure');
    const act = (f) => async () => {
      s.error = null;
      s.done = null;
      try {
        s.done = await f();
        await ctx.reload();
      } catch (err) {
        s.error = err;
        ctx.update();
      }
    };
    const pause = act(async () => {
      await api(`${base}/${d.paused ? 'resume' : 'pause'}`, { method: 'POST' });
      return d.paused ? `${name} resumed: it goes on from its place in the log.` : `${name} paused: it keeps its place in the log.`;
    });
    const test = act(async () => {
      const t = await api(`${base}/test`, { method: 'POST' });
      return `Test message ${t.delivered ? 'delivered' : 'not delivered'}: ${t.message} (${num(t.latency_ms)} ms).`;
    });
    const replayAll = act(async () => {
      if (!confirm(`Replay every dead letter of ${name}?`)) return null;
      const r = await api(`${base}/dead-letters/replay`, { method: 'POST', body: {} });
      return `${num(r.replayed)} dead letters put back for delivery.`;
    });
    const replayOne = (l) => act(async () => {
      const r = await api(`${base}/dead-letters/replay`, { method: 'POST', body: { [replayField[l.feed]]: [l.offset] } });
      return `${l.feed} ${l.offset}: ${num(r.replayed)} put back for delivery.`;
    });
    const state = destinationState(d);
    const t = overview.total;
    const x = overview.hours.map((h) => new Date(h.start).getTime() / 1000);
    const series = (label, key, colour) => ({ label, values: overview.hours.map((h) => h[key]), colour });
    return html`<h1>${name}</h1>
      <p class="muted">${d.spec.kind.type}${d.spec.kind.url ? html` to <code>${d.spec.kind.url}</code>` : nothing} · <code>${d.id}</code> · created ${when(d.created_at)}</p>
      <div class="stats">
        ${stat('State', html`<span data-testid="destination-state">${state}</span>`, d.delivery.suspended ? `after ${num(d.delivery.suspended.failures)} failures; next probe ${new Date(d.delivery.suspended.next_probe_at).toLocaleTimeString()}` : null)}
        ${stat(`Delivered (${hours} h)`, html`<span data-testid="delivered">${num(t.delivered)}</span>`)}
        ${stat(`Failed attempts (${hours} h)`, num(t.retried))}
        ${stat('Retrying now', html`<span data-testid="retrying">${num(d.delivery.retrying)}</span>`)}
        ${stat('Dead letters', html`<span data-testid="dead-letters">${num(d.delivery.dead_lettered)}</span>`)}
        ${stat('Lag', num(d.delivery.lag), 'log entries behind the processor')}
        ${stat('Latency p50 / p99', t.latency_p50_ms == null ? '—' : `${num(t.latency_p50_ms)} / ${num(t.latency_p99_ms)} ms`)}
      </div>
      ${d.delivery.suspended ? html`<div class="error" role="status"><strong>Suspended</strong> since ${when(d.delivery.suspended.since)}: ${d.delivery.suspended.last_error}</div>` : nothing}
      ${errorBox(s.error)}
      ${s.done && !s.error ? html`<p class="notice" role="status">${s.done}</p>` : nothing}
      ${can
        ? html`<div class="actions">
            <button @click=${pause}>${d.paused ? 'Resume' : 'Pause'}</button>
            <button @click=${test}>Send a test message</button>
          </div>`
        : html`<p class="muted">Pausing, testing and replaying need a key with the <code>configure</code> scope.</p>`}
      <section aria-labelledby="h-overview"><h2 id="h-overview">Delivery by hour</h2>
        <form class="inline" aria-label="Hours shown" @change=${(e) => ctx.go(`/destinations/${encodeURIComponent(name)}`, { hours: e.target.value })}>
          <label for="d-hours">Hours</label>
          <select id="d-hours" name="hours">${HOURS.map((h) => html`<option value=${h} ?selected=${h === hours}>${h}</option>`)}</select>
        </form>
        ${overview.hours.length === 0
          ? html`<p class="muted">Nothing was sent in the last ${hours} hours.</p>`
          : chart({
              label: `Messages to ${name} by hour over the last ${hours} hours: ${t.delivered} delivered, ${t.retried} failed attempts, ${t.dead_lettered} dead-lettered`,
              xTime: true,
              xRange: [Date.now() / 1000 - hours * 3600, Date.now() / 1000],
              x,
              series: [series('delivered', 'delivered', '#16a34a'), series('failed attempts', 'retried', '#ea580c'), series('dead-lettered', 'dead_lettered', '#dc2626')],
            })}
        ${t.last_error ? html`<p>Last error ${when(t.last_error_at)}: <code>${t.last_error}</code></p>` : nothing}
        ${t.skipped_consent || t.skipped_suppressed ? html`<p class="muted">Not sent: ${num(t.skipped_consent)} without consent, ${num(t.skipped_suppressed)} about suppressed people.</p>` : nothing}
      </section>
      <section aria-labelledby="h-retries"><h2 id="h-retries">Retries pending</h2>
        ${table('Retries pending', [
          ['Feed', (r) => r.feed],
          ['Position', (r) => r.offset],
          ['Attempts', (r) => num(r.attempts)],
          ['Next attempt', (r) => (r.held ? 'held behind the user\'s earlier message' : when(r.next_attempt_at))],
          ['Last error', (r) => html`<code>${r.last_error}</code>`],
        ], retries, 'No message waits for a retry.')}
      </section>
      <section aria-labelledby="h-dead"><h2 id="h-dead">Dead letters</h2>
        ${letters.data.length === 0
          ? html`<p class="muted">The dead-letter queue is empty.</p>`
          : html`${can ? html`<div class="actions"><button @click=${replayAll}>Replay all</button></div>` : nothing}
            <ul class="letters">${letters.data.map((l) => html`<li><details class="letter">
              <summary>${l.feed} <code>${l.offset}</code> · <strong>${l.reason}</strong>${l.status ? html` · HTTP ${l.status}` : nothing} · ${num(l.attempts)} attempts · ${when(l.at)}</summary>
              <p>Error: <code>${l.error}</code></p>
              <p class="muted">The last request's body (its start):</p>
              <pre class="json" tabindex="0" aria-label="Request body">${l.request_body}</pre>
              <p class="muted">The answer's body (its start):</p>
              <pre class="json" tabindex="0" aria-label="Answer body">${l.response_body || '—'}</pre>
            </details>
            ${can ? html`<button @click=${replayOne(l)} aria-label="Replay ${l.feed} ${l.offset}">Replay</button>` : nothing}</li>`)}</ul>
            ${letters.next_cursor ? html`<p><a href="#/destinations/${encodeURIComponent(name)}?cursor=${encodeURIComponent(letters.next_cursor)}">Next dead letters</a></p>` : nothing}`}
      </section>`;
  },
};
