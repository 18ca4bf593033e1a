// One computed trait: its definition, edited with the same check while typing, and
// deleting it (refused while a segment reads it, with the API's message).
import { api } from '../api.js';
import { html, nothing, errorBox, when, pairs } from '../ui.js';
import { checker } from '../check.js';
import { traitDefinition, traitFields } from './traits.js';

export default {
  title: 'Computed trait',
  async load(ctx) {
    return api(`/api/v1/computed-traits/${encodeURIComponent(ctx.params.name)}`);
  },
  view(ctx) {
    const t = ctx.data;
    const s = ctx.state;
    const path = `/api/v1/computed-traits/${encodeURIComponent(t.name)}`;
    s.onInput ??= checker(ctx, '/api/v1/computed-traits/check', (form) => traitDefinition(form, t.name));
    const save = async (e) => {
      e.preventDefault();
      s.error = null;
      try {
        await api(path, { method: 'PUT', body: traitDefinition(e.target, t.name) });
        s.saved = true;
        await ctx.reload();
      } catch (err) {
        s.error = err;
        ctx.update();
      }
    };
    const remove = async () => {
      if (!confirm(`Delete the computed trait ${t.name}?`)) return;
      try {
        await api(path, { method: 'DELETE' });
        ctx.go('/traits');
      } catch (err) {
        s.error = err;
        ctx.update();
      }
    };
    return html`<h1>${t.name}</h1>
      <p>${t.description || ''}</p>
      ${pairs('Definition', {
        Aggregate: t.expression,
        Type: t.value_type,
        Created: when(t.created_at),
        Updated: when(t.updated_at),
      })}
      ${ctx.can('configure')
        ? html`<form class="stack" @submit=${save} @input=${s.onInput}>
            <fieldset><legend>Edit</legend>
              ${traitFields(ctx, t)}
              ${errorBox(s.error)}
              ${s.saved && !s.error ? html`<p role="status">Saved: every profile is being evaluated again.</p>` : nothing}
              <button type="submit">Save</button>
              <button type="button" class="danger" @click=${remove}>Delete</button>
            </fieldset>
          </form>`
        : nothing}`;
  },
};
