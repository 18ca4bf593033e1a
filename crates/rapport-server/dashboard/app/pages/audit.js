// The audit trail: every change made through the REST API (and so through this dashboard
// and the CLI), by which key, with what it changed; filterable.
import { api } from '../api.js';
import { html, nothing, table, when, json, field } from '../ui.js';

export default {
  title: 'Audit trail',
  async load(ctx) {
    const q = ctx.query;
    return api('/api/v1/audit', {
      query: { actor: q.actor, action: q.action, resource_type: q.resource_type, limit: 50, cursor: q.cursor },
    });
  },
  view(ctx) {
    const page = ctx.data;
    const q = ctx.query;
    const filter = (e) => {
      e.preventDefault();
      ctx.go('/audit', {
        actor: field(e.target, 'actor'),
        action: field(e.target, 'action'),
        resource_type: field(e.target, 'resource_type'),
      });
    };
    return html`<h1>Audit trail</h1>
      <form class="inline" @submit=${filter} aria-label="Filter the audit trail">
        <label for="a-actor">Key id</label><input id="a-actor" name="actor" .value=${q.actor || ''}>
        <label for="a-action">Action</label><input id="a-action" name="action" .value=${q.action || ''} placeholder="segment.create">
        <label for="a-type">Resource type</label><input id="a-type" name="resource_type" .value=${q.resource_type || ''} placeholder="segment">
        <button type="submit">Filter</button>
      </form>
      ${table('Audit trail', [
        ['When', (e) => when(e.at)],
        ['Key', (e) => html`${e.actor.key_name} <code>${e.actor.key_id}</code>`],
        ['Action', (e) => html`<code>${e.action}</code>`],
        ['Resource', (e) => `${e.resource.type}${e.resource.id ? ` ${e.resource.id}` : ''}`],
        ['Answer', (e) => html`${e.status}${e.error ? html` <span class="muted">${e.error}</span>` : nothing}`],
        ['Change', (e) => (e.before || e.after
          ? html`<details><summary>before / after</summary>${json({ before: e.before ?? null, after: e.after ?? null })}</details>`
          : '—')],
      ], page.data, 'Nothing recorded: changes through the API, the CLI and this dashboard appear here.')}
      ${page.next_cursor ? html`<p><a href="#/audit?cursor=${encodeURIComponent(page.next_cursor)}">Older entries</a></p>` : nothing}`;
  },
};
