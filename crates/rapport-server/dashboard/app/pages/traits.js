// Computed traits: every definition, and a form to define one from parts (function, event,
// property, condition, window) or as one aggregate of the segment language, checked and
// previewed while it is typed.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, field, empty } from '../ui.js';
import { checker, checkView } from '../check.js';

const FUNCTIONS = ['count', 'sum', 'avg', 'min', 'max', 'first', 'last', 'first_seen', 'last_seen', 'most_frequent', 'unique', 'unique_count'];

/** The definition the form holds, as the API takes it (empty parts left out). */
export function traitDefinition(form, name) {
  const part = (n) => field(form, n) || undefined;
  const expression = part('expression');
  return expression
    ? { name, expression, description: part('description') }
    : {
        name,
        function: part('function'),
        event: part('event'),
        property: part('property'),
        where: part('where'),
        window: part('window'),
        description: part('description'),
      };
}

/** The form's fields, filled from `t` (a stored definition) when editing. */
export function traitFields(ctx, t) {
  return html`<p class="muted">Either the parts below, or one aggregate in <em>Expression</em>
      (see <code>docs/segments.md</code>), such as <code>count(event == "Order Completed", within 30d)</code>.</p>
    <label for="ct-function">Function</label>
    <select id="ct-function" name="function">
      <option value="">(from the expression)</option>
      ${FUNCTIONS.map((f) => html`<option value=${f}>${f}</option>`)}
    </select>
    <label for="ct-event">Event name</label>
    <input id="ct-event" name="event" placeholder="Order Completed">
    <label for="ct-property">Property</label>
    <input id="ct-property" name="property" placeholder="revenue">
    <label for="ct-where">Condition</label>
    <input id="ct-where" name="where" placeholder='properties.currency == "EUR"'>
    <label for="ct-window">Window</label>
    <input id="ct-window" name="window" placeholder="30d">
    <label for="ct-expression">Expression</label>
    <textarea id="ct-expression" name="expression" rows="2" .value=${t ? t.expression : ''} aria-describedby="ct-check"></textarea>
    <label for="ct-description">Description</label>
    <input id="ct-description" name="description" .value=${t?.description || ''}>
    <div id="ct-check">${checkView(ctx, 'have a value')}</div>`;
}

export default {
  title: 'Computed traits',
  async load() {
    return (await api('/api/v1/computed-traits')).data;
  },
  view(ctx) {
    const traits = ctx.data;
    const s = ctx.state;
    s.onInput ??= checker(ctx, '/api/v1/computed-traits/check', (form) => traitDefinition(form, field(form, 'name')));
    const create = async (e) => {
      e.preventDefault();
      s.error = null;
      const body = traitDefinition(e.target, field(e.target, 'name'));
      try {
        await api('/api/v1/computed-traits', { method: 'POST', body });
        ctx.go(`/traits/${encodeURIComponent(body.name)}`);
      } catch (err) {
        s.error = err;
        ctx.update();
      }
    };
    return html`<h1>Computed traits</h1>
      <p class="muted">Values Rapport keeps on every profile from its events, read in segments as <code>computed.&lt;name&gt;</code>.
        Built in on every profile: the RFM summary (<code>rfm_orders</code>, <code>rfm_revenue</code>, …) and, once fitted, the value models' scores.</p>
      ${traits.length === 0
        ? empty('No computed trait defined yet.', 'Define one below, such as the count of "Order Completed" events over 30 days.')
        : table('Computed traits', [
            ['Trait', (t) => html`<a href="#/traits/${encodeURIComponent(t.name)}">${t.name}</a>`],
            ['Aggregate', (t) => html`<code>${t.expression}</code>`],
            ['Type', (t) => t.value_type],
            ['Updated', (t) => when(t.updated_at)],
          ], traits)}
      ${ctx.can('configure')
        ? html`<form class="stack" @submit=${create} @input=${s.onInput}>
            <fieldset><legend>New computed trait</legend>
              <label for="ct-name">Name</label>
              <input id="ct-name" name="name" required placeholder="orders_30d">
              ${traitFields(ctx, null)}
              ${errorBox(s.error)}
              <button type="submit">Create computed trait</button>
            </fieldset>
          </form>`
        : nothing}`;
  },
};
