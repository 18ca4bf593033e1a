// Settings: sources and their keys (create, revoke), admin keys and their scopes.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, field } from '../ui.js';

const ms = (t) => (t ? new Date(t).toISOString() : null);

export default {
  title: 'Settings',
  async load() {
    const [sources, keys] = await Promise.all([api('/api/v1/sources'), api('/api/v1/keys')]);
    return { sources: sources.data, keys: keys.data };
  },
  view(ctx) {
    const { sources, keys } = ctx.data;
    const s = ctx.state;
    const configure = ctx.can('configure');
    const sourceName = (id) => sources.find((x) => x.id === id)?.name || id;
    const act = (f) => async (e) => {
      e.preventDefault();
      s.error = null;
      try {
        await f(e);
        await ctx.reload();
      } catch (err) {
        s.error = err;
        ctx.update();
      }
    };
    const createSource = act(async (e) => {
      const out = await api('/api/v1/sources', { method: 'POST', body: { name: field(e.target, 'name') } });
      s.issued = { what: `write key of source ${out.source?.name ?? field(e.target, 'name')}`, secret: out.write_key?.secret ?? out.key?.secret };
      e.target.reset();
    });
    const createKey = act(async (e) => {
      const kind = field(e.target, 'kind');
      const scopes = [...e.target.querySelectorAll('input[name=scope]:checked')].map((i) => i.value);
      const body = { kind, name: field(e.target, 'name') || undefined };
      if (kind === 'write') body.source = field(e.target, 'source');
      else if (scopes.length) body.scopes = scopes;
      const out = await api('/api/v1/keys', { method: 'POST', body });
      s.issued = { what: `${kind} key ${out.name}`, secret: out.secret };
      e.target.reset();
    });
    const revoke = (k) => act(async () => {
      if (!confirm(`Revoke the key “${k.name}” (${k.secret_prefix}…)? Whatever uses it stops working.`)) return;
      await api(`/api/v1/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
      s.issued = null;
    });
    return html`<h1>Settings</h1>
      ${errorBox(s.error)}
      ${s.issued
        ? html`<div class="notice" role="status"><p>New ${s.issued.what}. Its secret is shown this once: copy it now.</p>
            <p><code class="secret">${s.issued.secret}</code></p></div>`
        : nothing}
      <section aria-labelledby="h-sources"><h2 id="h-sources">Sources</h2>
        ${table('Sources', [
          ['Name', (x) => x.name],
          ['Id', (x) => html`<code>${x.id}</code>`],
          ['Created', (x) => when(ms(x.created_at_ms))],
          ['Retention', (x) => (x.settings?.retention_days ? `${x.settings.retention_days} days` : 'kept')],
          ['Rate limit', (x) => (x.settings?.rate_limit ? `${x.settings.rate_limit.per_second}/s` : 'none')],
        ], sources, 'No source: create one, then send events with its write key.')}
        ${configure
          ? html`<form class="inline" @submit=${createSource}>
              <label for="source-name">New source</label>
              <input id="source-name" name="name" required placeholder="web, ios, backend…">
              <button type="submit">Create source</button>
            </form>`
          : nothing}
      </section>
      <section aria-labelledby="h-keys"><h2 id="h-keys">Keys</h2>
        ${table('Keys', [
          ['Name', (k) => k.name],
          ['Kind', (k) => k.kind],
          ['Starts with', (k) => html`<code>${k.secret_prefix}…</code>`],
          ['Source or scopes', (k) => (k.kind === 'write' ? sourceName(k.source_id) : (k.scopes || []).join(', '))],
          ['Created', (k) => when(ms(k.created_at_ms))],
          ['State', (k) => (k.revoked_at_ms ? html`revoked ${when(ms(k.revoked_at_ms))}` : 'live')],
          ['', (k) => (configure && !k.revoked_at_ms && k.id !== ctx.session.key_id
            ? html`<button class="danger" @click=${revoke(k)} aria-label="Revoke ${k.name}">Revoke</button>`
            : k.id === ctx.session.key_id ? html`<span class="muted">this session's key</span>` : nothing)],
        ], keys)}
        ${configure
          ? html`<form class="stack" @submit=${createKey}>
              <fieldset><legend>New key</legend>
                <label for="key-kind">Kind</label>
                <select id="key-kind" name="kind">
                  <option value="write">write key (sends events for a source)</option>
                  <option value="admin">admin key (the REST API, the CLI, this dashboard)</option>
                </select>
                <label for="key-name">Name</label>
                <input id="key-name" name="name" placeholder="who or what uses it">
                <label for="key-source">Source (write keys)</label>
                <select id="key-source" name="source">${sources.map((x) => html`<option value=${x.id}>${x.name}</option>`)}</select>
                <fieldset class="scopes"><legend>Scopes (admin keys; none ticked: all of yours)</legend>
                  ${ctx.session.scopes.map((sc) => html`<label><input type="checkbox" name="scope" value=${sc}> ${sc}</label>`)}
                </fieldset>
                <button type="submit">Create key</button>
              </fieldset>
            </form>`
          : html`<p class="muted">Your key has no <code>configure</code> scope: sources and keys are read-only here.</p>`}
      </section>`;
  },
};
