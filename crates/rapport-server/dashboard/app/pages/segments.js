// Segments: every audience with its size, and a form to create one.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, num, field, empty } from '../ui.js';
import { checker, checkView } from '../check.js';

export default {
  title: 'Segments',
  async load() {
    const [segments, status] = await Promise.all([api('/api/v1/segments'), api('/api/v1/audiences/status')]);
    return { segments: segments.data, status };
  },
  view(ctx) {
    const { segments, status } = ctx.data;
    const s = ctx.state;
    const create = async (e) => {
      e.preventDefault();
      s.error = null;
      const body = {
        name: field(e.target, 'name'),
        expression: field(e.target, 'expression'),
        description: field(e.target, 'description') || undefined,
      };
      try {
        await api('/api/v1/segments', { method: 'POST', body });
        ctx.go(`/segments/${encodeURIComponent(body.name)}`);
      } catch (err) {
        s.error = err;
        ctx.update();
      }
    };
    s.onInput ??= checker(ctx, '/api/v1/segments/check', (form) => ({
      name: field(form, 'name'),
      expression: field(form, 'expression'),
    }));
    return html`<h1>Segments</h1>
      <p class="muted">${num(status.profiles)} profiles evaluated · definitions version ${status.definitions_version}
        ${status.backfill?.state && status.backfill.state !== 'done' ? html` · backfill ${status.backfill.state} (${num(status.backfill.processed)} / ${num(status.backfill.total)})` : nothing}</p>
      ${segments.length === 0
        ? empty('No segment yet.', 'Create one below: an expression over traits, computed traits and events, such as traits.plan == "pro".')
        : table('Segments', [
            ['Segment', (g) => html`<a href="#/segments/${encodeURIComponent(g.name)}">${g.name}</a>`],
            ['Members', (g) => num(g.size)],
            ['Expression', (g) => html`<code>${g.expression}</code>`],
            ['Updated', (g) => when(g.updated_at)],
            ['Backfill', (g) => g.backfill.state],
          ], segments)}
      ${ctx.can('configure')
        ? html`<form class="stack" @submit=${create} @input=${s.onInput}>
            <fieldset><legend>New segment</legend>
              <label for="seg-name">Name</label>
              <input id="seg-name" name="name" required placeholder="pro_users">
              <label for="seg-expression">Expression</label>
              <textarea id="seg-expression" name="expression" required rows="3" placeholder='traits.plan == "pro"' aria-describedby="seg-check"></textarea>
              <div id="seg-check">${checkView(ctx, 'be members')}</div>
              <label for="seg-description">Description</label>
              <input id="seg-description" name="description">
              ${errorBox(s.error)}
              <button type="submit">Create segment</button>
            </fieldset>
          </form>`
        : nothing}`;
  },
};
