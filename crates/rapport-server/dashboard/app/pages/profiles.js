// Profiles: find a customer by any identifier (e-mail, user id, phone, `type:value`, a
// profile id) or by a trait's value.
import { api } from '../api.js';
import { html, nothing, errorBox, empty, table, when, profileHref, field } from '../ui.js';

/** What the search box holds, as the API names it: a reference, or a trait search. */
export function parseSearch(text) {
  const q = text.trim();
  if (!q) return null;
  const eq = q.indexOf('=');
  if (eq > 0 && !q.slice(0, eq).includes(':')) {
    return { trait: q.slice(0, eq).trim(), value: q.slice(eq + 1).trim() };
  }
  if (/^p_[0-9a-z]+$/i.test(q) || /^[a-z_]+:./.test(q)) return { reference: q };
  if (q.includes('@')) return { reference: `email:${q}` };
  if (/^\+?[0-9 ()-]{7,}$/.test(q)) return { reference: `phone:${q}` };
  return { reference: `user_id:${q}`, fallbackTrait: q };
}

function mainIdentifier(p) {
  const order = ['email', 'user_id', 'phone'];
  for (const kind of order) {
    const found = p.identifiers.find((i) => i.type === kind);
    if (found) return `${found.type}:${found.value}`;
  }
  return p.identifiers[0] ? `${p.identifiers[0].type}:${p.identifiers[0].value}` : p.id;
}

export default {
  title: 'Profiles',
  async load(ctx) {
    const search = parseSearch(ctx.query.q || '');
    if (!search) return { search: null, results: [] };
    if (search.reference) {
      try {
        const p = await api(`/api/v1/profiles/${encodeURIComponent(search.reference)}`);
        return { search, results: [p], exact: true };
      } catch (err) {
        if (err.status !== 404) throw err;
        return { search, results: [], missing: err };
      }
    }
    const page = await api('/api/v1/profiles', {
      query: { trait: search.trait, value: search.value, limit: 50, cursor: ctx.query.cursor },
    });
    return { search, results: page.data, next: page.next_cursor };
  },
  started(ctx) {
    const d = ctx.data;
    // An exact find goes straight to the profile; the back button returns to the search.
    if (d && d.exact && d.results.length === 1 && !ctx.query.list) {
      location.replace(profileHref(d.results[0].id));
    }
  },
  view(ctx) {
    const d = ctx.data;
    const submit = (e) => {
      e.preventDefault();
      ctx.go('/profiles', { q: field(e.target, 'q') });
    };
    return html`<h1>Profiles</h1>
      <form class="search" role="search" @submit=${submit}>
        <label for="q">Find a customer</label>
        <input id="q" name="q" type="search" .value=${ctx.query.q || ''}
          placeholder="ann@example.com, user id, +44…, email:…, p_…, or plan=pro" autocomplete="off">
        <button type="submit">Search</button>
      </form>
      <p class="muted">An e-mail, phone or user id finds the one profile that holds it; <code>trait=value</code> lists every profile whose trait has that value.</p>
      ${!d.search
        ? empty('Search for a customer.', 'Type an identifier or a trait and value above. Profiles are built from the events your sources send.')
        : d.missing
          ? html`${errorBox(d.missing)}${d.search.fallbackTrait
              ? html`<p>Or search a trait: <a href="#/profiles?q=${encodeURIComponent('name=' + d.search.fallbackTrait)}">name = ${d.search.fallbackTrait}</a>.</p>`
              : nothing}`
          : table('Profiles found', [
              ['Profile', (p) => html`<a href=${profileHref(p.id)}>${mainIdentifier(p)}</a>`],
              ['Name', (p) => p.traits.name ?? p.traits.firstName ?? '—'],
              ['Identifiers', (p) => p.identifiers.length],
              ['Segments', (p) => p.segments.map((s) => s.segment).join(', ') || '—'],
              ['Last seen', (p) => when(p.last_seen)],
            ], d.results, 'No profile matches.')}
      ${d.next ? html`<p><a href="#/profiles?q=${encodeURIComponent(ctx.query.q)}&cursor=${encodeURIComponent(d.next)}">Next page</a></p>` : nothing}`;
  },
};
