// One segment: its size over time, its members with their entry times, its definition.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, num, chart, profileHref, field } from '../ui.js';
import { checker, checkView } from '../check.js';

export default {
  title: 'Segment',
  async load(ctx) {
    const name = encodeURIComponent(ctx.params.name);
    const [segment, history, members] = await Promise.all([
      api(`/api/v1/segments/${name}`),
      api(`/api/v1/segments/${name}/size-history`),
      api(`/api/v1/segments/${name}/members`, { query: { limit: 50, cursor: ctx.query.cursor } }),
    ]);
    return { segment, history: history.data || history, members };
  },
  started(ctx) {
    // A new segment fills as its backfill runs: follow it until done.
    ctx.every(2000, () => {
      if (ctx.data?.segment?.backfill?.state !== 'done') ctx.reload();
    });
  },
  view(ctx) {
    const { segment, history, members } = ctx.data;
    const s = ctx.state;
    const save = async (e) => {
      e.preventDefault();
      s.error = null;
      try {
        await api(`/api/v1/segments/${encodeURIComponent(segment.name)}`, {
          method: 'PUT',
          body: { name: segment.name, expression: field(e.target, 'expression'), description: field(e.target, 'description') || undefined },
        });
        s.saved = true;
        await ctx.reload();
      } catch (err) {
        s.error = err;
        ctx.update();
      }
    };
    s.onInput ??= checker(ctx, '/api/v1/segments/check', (form) => ({
      name: segment.name,
      expression: field(form, 'expression'),
    }));
    const points = history.map((p) => [new Date(p.hour).getTime() / 1000, p.size]);
    return html`<h1>${segment.name}</h1>
      <p>${segment.description || ''}</p>
      <div class="stats">
        <div class="stat"><div class="label">Members</div><div class="figure" data-testid="segment-size">${num(segment.size)}</div></div>
        <div class="stat"><div class="label">Backfill</div><div class="figure">${segment.backfill.state}</div>
          <div class="note">${num(segment.backfill.processed)} / ${num(segment.backfill.total)} profiles</div></div>
        <div class="stat"><div class="label">Updated</div><div class="figure small">${when(segment.updated_at)}</div></div>
      </div>
      <section aria-labelledby="h-size"><h2 id="h-size">Size by hour</h2>
        ${points.length < 2
          ? html`<p class="muted">The size is recorded hourly; the chart starts after two hours.</p>`
          : chart({
              label: `Members of ${segment.name} by hour, from ${points[0][1]} to ${points[points.length - 1][1]}`,
              xTime: true,
              x: points.map((p) => p[0]),
              series: [{ label: 'members', values: points.map((p) => p[1]), fill: true }],
            })}
      </section>
      <section aria-labelledby="h-members"><h2 id="h-members">Members</h2>
        ${table('Members', [
          ['Profile', (m) => html`<a href=${profileHref(m.profile)}>${m.main_identifier || m.profile}</a>`],
          ['Entered', (m) => when(m.entered_at)],
        ], members.data, segment.backfill.state === 'done' ? 'No member: no profile matches the expression.' : 'Evaluating profiles…')}
        ${members.next_cursor ? html`<p><a href="#/segments/${encodeURIComponent(segment.name)}?cursor=${encodeURIComponent(members.next_cursor)}">Next members</a></p>` : nothing}
      </section>
      ${ctx.can('configure')
        ? html`<form class="stack" @submit=${save} @input=${s.onInput}>
            <fieldset><legend>Definition</legend>
              <label for="seg-expression">Expression</label>
              <textarea id="seg-expression" name="expression" rows="3" required .value=${segment.expression} aria-describedby="seg-check"></textarea>
              <div id="seg-check">${checkView(ctx, 'be members')}</div>
              <label for="seg-description">Description</label>
              <input id="seg-description" name="description" .value=${segment.description || ''}>
              ${errorBox(s.error)}
              ${s.saved && !s.error ? html`<p role="status">Saved: members are being re-evaluated.</p>` : nothing}
              <button type="submit">Save</button>
            </fieldset>
          </form>`
        : html`<p>Expression: <code>${segment.expression}</code></p>`}`;
  },
};
