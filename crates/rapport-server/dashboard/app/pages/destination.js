// One destination: its hourly delivery overview as a chart, the retries pending, the
// dead-letter queue (each letter's error and bodies on demand) with replay, pause and
// resume, and a test send; its definition edited (the secret left out: saving without it
// keeps it), deleting it, and a backfill started, followed while it runs, and cancelled.
// The signing secret is never read here.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, num, chart, stat, field } from '../ui.js';
import { destinationState, destinationEditor, canDefine } from './destinations.js';

/** The definition to edit: as the API shows it, without a webhook's (masked) secret. */
function editable(spec) {
  const copy = structuredClone(spec);
  if (copy.kind.type === 'webhook') delete copy.kind.secret;
  return copy;
}

/** A time as a `datetime-local` input shows it (the reader's zone, to the second). */
function localInput(date) {
  return new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

/** A `datetime-local` input's value as RFC 3339 (UTC); empty: now. */
function rfc3339(value) {
  return (value ? new Date(value) : new Date()).toISOString();
}

/** The backfill as `delivery.backfill` reports it, with start, cancel and forget. */
function backfillSection(ctx, d, base) {
  const s = ctx.state;
  const b = d.delivery.backfill;
  const running = b && !b.finished_at;
  const takesEvents = d.spec.deliver?.events != null;
  s.backfillSince ??= localInput(new Date(Date.now() - 86400000));
  const start = async (e) => {
    e.preventDefault();
    s.backfillError = null;
    s.backfillDone = null;
    s.backfillSince = field(e.target, 'since');
    try {
      await api(`${base}/backfill`, {
        method: 'POST',
        body: { since: rfc3339(field(e.target, 'since')), until: rfc3339(field(e.target, 'until')) },
      });
      s.backfillDone = 'Backfill started: the events of the range are replayed beside the live delivery.';
      await ctx.reload();
    } catch (err) {
      s.backfillError = err;
      ctx.update();
    }
  };
  const cancel = async () => {
    s.backfillError = null;
    s.backfillDone = null;
    if (running && !confirm(`Cancel the backfill of ${d.spec.name}? What it sent stays sent.`)) return;
    try {
      await api(`${base}/backfill`, { method: 'DELETE' });
      s.backfillDone = running ? 'Backfill cancelled; what it sent stays sent.' : 'Backfill forgotten.';
      await ctx.reload();
    } catch (err) {
      s.backfillError = err;
      ctx.update();
    }
  };
  return html`<section aria-labelledby="h-backfill"><h2 id="h-backfill">Backfill</h2>
    <p class="muted">Replays the events timestamped in a range from the log into this destination, beside its live delivery, each under its usual idempotency key (a receiver that keeps them sees each once).</p>
    ${b
      ? html`<div class="backfill" data-testid="backfill" aria-live="polite">
          <p><strong data-testid="backfill-state">${running ? 'running' : 'finished'}</strong>:
            events timestamped from ${when(b.since)} to ${when(b.until)}, started ${when(b.started_at)}${b.finished_at ? html`, finished ${when(b.finished_at)}` : nothing}.</p>
          <p><span data-testid="backfill-sent">${num(b.sent)}</span> events sent; the log read up to position
            <span data-testid="backfill-position">${num(b.position)}</span> of <span data-testid="backfill-through">${num(b.through)}</span>.</p>
          <progress max=${Math.max(1, b.through)} value=${b.position} aria-label="Log entries read by the backfill">${num(b.position)} of ${num(b.through)}</progress>
          ${ctx.can('configure') ? html`<div class="actions"><button class="danger" @click=${cancel}>${running ? 'Cancel the backfill' : 'Forget this backfill'}</button></div>` : nothing}
        </div>`
      : html`<p class="muted">${takesEvents ? 'No backfill yet: start one below to send past events.' : 'This destination takes no events (deliver.events is null), so there is nothing to backfill.'}</p>`}
    ${errorBox(s.backfillError)}
    ${s.backfillDone && !s.backfillError ? html`<p class="notice" role="status">${s.backfillDone}</p>` : nothing}
    ${canDefine(ctx) && !running && takesEvents
      ? html`<form class="inline" @submit=${start} aria-label="Start a backfill">
          <label for="b-since">Events from</label>
          <input id="b-since" name="since" type="datetime-local" step="1" required .value=${s.backfillSince}>
          <label for="b-until">until</label>
          <input id="b-until" name="until" type="datetime-local" step="1" aria-describedby="b-until-help">
          <span id="b-until-help" class="muted">(empty: now)</span>
          <button type="submit">Start the backfill</button>
        </form>`
      : nothing}
  </section>`;
}

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
  /** While a backfill runs, its progress is read again every second. */
  started(ctx) {
    ctx.every(1000, async () => {
      const b = ctx.data?.destination?.delivery.backfill;
      if (!b || b.finished_at) return;
      try {
        ctx.data.destination = await api(`/api/v1/destinations/${encodeURIComponent(ctx.data.destination.id)}`);
        ctx.update();
      } catch {
        // The next tick, or a reload, says more.
      }
    });
  },
  view(ctx) {
    const { destination: d, overview, retries, letters, hours } = ctx.data;
    const s = ctx.state;
    const name = d.spec.name;
    const base = `/api/v1/destinations/${encodeURIComponent(name)}`;
    const can = ctx.can('configure');
    // A replay sends stored messages again, unmasked: it asks `read` too.
    const canReplay = canDefine(ctx);
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
    const remove = async () => {
      s.error = null;
      s.done = null;
      if (!confirm(`Delete the destination ${name} with its retries and dead letters?`)) return;
      try {
        await api(base, { method: 'DELETE' });
        ctx.go('/destinations', { deleted: name });
      } catch (err) {
        s.error = err;
        ctx.update();
        document.querySelector('main .error')?.scrollIntoView();
      }
    };
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
        : html`<p class="muted">Pausing, testing and replaying need a key with the <code>configure</code> scope (replaying, <code>read</code> too).</p>`}
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
          : html`${canReplay ? html`<div class="actions"><button @click=${replayAll}>Replay all</button></div>` : nothing}
            <ul class="letters">${letters.data.map((l) => html`<li><details class="letter">
              <summary>${l.feed} <code>${l.offset}</code> · <strong>${l.reason}</strong>${l.status ? html` · HTTP ${l.status}` : nothing} · ${num(l.attempts)} attempts · ${when(l.at)}</summary>
              <p>Error: <code>${l.error}</code></p>
              <p class="muted">The last request's body (its start):</p>
              <pre class="json" tabindex="0" aria-label="Request body">${l.request_body}</pre>
              <p class="muted">The answer's body (its start):</p>
              <pre class="json" tabindex="0" aria-label="Answer body">${l.response_body || '—'}</pre>
            </details>
            ${canReplay ? html`<button @click=${replayOne(l)} aria-label="Replay ${l.feed} ${l.offset}">Replay</button>` : nothing}</li>`)}</ul>
            ${letters.next_cursor ? html`<p><a href="#/destinations/${encodeURIComponent(name)}?cursor=${encodeURIComponent(letters.next_cursor)}">Next dead letters</a></p>` : nothing}`}
      </section>
      ${backfillSection(ctx, d, base)}
      ${canDefine(ctx)
        ? html`<section aria-labelledby="h-edit"><h2 id="h-edit">Definition</h2>
            ${destinationEditor(ctx, {
              id: 'edit-destination',
              legend: `Definition of ${name}`,
              spec: editable(d.spec),
              submit: 'Save',
              note: d.spec.kind.type === 'webhook'
                ? 'The signing secret is not shown: saving without one keeps it (a new "secret" replaces it).'
                : 'Secrets show masked: saved back as they are, they keep the stored ones.',
              save: async (spec) => {
                const out = await api(base, { method: 'PUT', body: spec });
                if (out.spec.name !== name) ctx.go(`/destinations/${encodeURIComponent(out.spec.name)}`);
                else await ctx.reload();
                return `${out.spec.name} saved: its place in the log, retries and dead letters stay.`;
              },
            })}
          </section>`
        : nothing}
      ${ctx.can('configure')
        ? html`<section aria-labelledby="h-delete"><h2 id="h-delete">Delete</h2>
            <p class="muted">Deleting removes the destination with its retries and dead letters; journeys that send to it then send nothing.</p>
            <button class="danger" @click=${remove}>Delete ${name}</button>
          </section>`
        : nothing}`;
  },
};
