// The dashboard: sign-in, the layout, and a router from `#/path?query` to pages. Each page
// is a module under pages/ exporting {title, load(ctx), view(ctx)}: `load` reads the REST
// API, `view` draws what it read (docs/dashboard.md).
import { render } from '/assets/vendor/lit-html/lit-html.js';
import { api, setCsrf, whenSignedOut } from './api.js';
import { html, nothing, errorBox, field } from './ui.js';
import overview from './pages/overview.js';
import events from './pages/events.js';
import profiles from './pages/profiles.js';
import profile from './pages/profile.js';
import segments from './pages/segments.js';
import segment from './pages/segment.js';
import traits from './pages/traits.js';
import trait from './pages/trait.js';
import journeys from './pages/journeys.js';
import journey from './pages/journey.js';
import destinations from './pages/destinations.js';
import destination from './pages/destination.js';
import value from './pages/value.js';
import identity from './pages/identity.js';
import privacy from './pages/privacy.js';
import audit from './pages/audit.js';
import settings from './pages/settings.js';

/** [pattern of the hash path, page, the navigation entry it belongs to]. */
const routes = [
  [/^\/$/, overview, 'overview'],
  [/^\/events$/, events, 'events'],
  [/^\/profiles$/, profiles, 'profiles'],
  [/^\/profiles\/(?<ref>[^/]+)$/, profile, 'profiles'],
  [/^\/segments$/, segments, 'segments'],
  [/^\/segments\/(?<name>[^/]+)$/, segment, 'segments'],
  [/^\/traits$/, traits, 'traits'],
  [/^\/traits\/(?<name>[^/]+)$/, trait, 'traits'],
  [/^\/journeys$/, journeys, 'journeys'],
  [/^\/journeys\/(?<name>[^/]+)$/, journey, 'journeys'],
  [/^\/destinations$/, destinations, 'destinations'],
  [/^\/destinations\/(?<name>[^/]+)$/, destination, 'destinations'],
  [/^\/value$/, value, 'value'],
  [/^\/identity$/, identity, 'identity'],
  [/^\/privacy$/, privacy, 'privacy'],
  [/^\/audit$/, audit, 'audit'],
  [/^\/settings$/, settings, 'settings'],
];

const nav = [
  ['overview', '#/', 'Overview'],
  ['events', '#/events', 'Live events'],
  ['profiles', '#/profiles', 'Profiles'],
  ['segments', '#/segments', 'Segments'],
  ['traits', '#/traits', 'Computed traits'],
  ['journeys', '#/journeys', 'Journeys'],
  ['destinations', '#/destinations', 'Destinations'],
  ['value', '#/value', 'Value'],
  ['identity', '#/identity', 'Identity'],
  ['privacy', '#/privacy', 'Privacy'],
  ['audit', '#/audit', 'Audit trail'],
  ['settings', '#/settings', 'Settings'],
];

const root = document.getElementById('app');
// Rendered by lit-html from here on: the static "Loading…" goes.
root.replaceChildren();
let session = null;
let current = null; // {page, ctx, section}
let generation = 0;

function signInView(error) {
  const submit = async (e) => {
    e.preventDefault();
    const key = field(e.target, 'key');
    try {
      const s = await api('/session', { method: 'POST', body: { key } });
      e.target.reset();
      started(s);
    } catch (err) {
      render(signInView(err), root);
      document.getElementById('key')?.focus();
    }
  };
  return html`<main id="main" class="sign-in">
    <form @submit=${submit} aria-labelledby="sign-in-title">
      <h1 id="sign-in-title">Sign in to Rapport</h1>
      <p>Paste an admin key (it begins with <code>ak_</code>). It is exchanged for a session; the page does not keep it.</p>
      <label for="key">Admin key</label>
      <input id="key" name="key" type="password" autocomplete="current-password" required spellcheck="false">
      ${errorBox(error)}
      <button type="submit">Sign in</button>
      <p class="muted">No key? <code>rapport keys create --kind admin --name you</code> makes one; the first start printed one.</p>
    </form>
  </main>`;
}

function signedOut(err) {
  session = null;
  setCsrf('');
  stopTimers();
  current = null;
  render(signInView(err && err.status === 401 && err.message ? err : null), root);
}

async function signOut() {
  try {
    await api('/session', { method: 'DELETE' });
  } finally {
    signedOut(null);
  }
}

function started(s) {
  session = s;
  setCsrf(s.csrf);
  route();
}

/** The frame around a page; `busy` while its data loads (`aria-busy`), `data-generation`
 * counting the pages shown, so that a reader (or a benchmark) can tell this page's content
 * from the last one's. */
function layout(section, body, busy) {
  return html`<a class="skip" href="#main" @click=${(e) => {
      e.preventDefault();
      document.getElementById('main')?.focus();
    }}>Skip to content</a>
    <header class="top">
      <a class="brand" href="#/">Rapport</a>
      <span class="who">Signed in as <strong>${session.name}</strong>
        <span class="muted">(${session.scopes.join(', ')})</span></span>
      <button class="link" @click=${signOut}>Sign out</button>
    </header>
    <div class="frame">
      <nav aria-label="Sections"><ul>${nav.map(
        ([id, href, label]) => html`<li><a href=${href} aria-current=${id === section ? 'page' : nothing}>${label}</a></li>`,
      )}</ul></nav>
      <main id="main" tabindex="-1" aria-busy=${busy ? 'true' : 'false'} data-generation=${generation}>${body}</main>
    </div>`;
}

function draw() {
  if (!current || !session) return;
  const { page, ctx, section } = current;
  let body;
  if (ctx.error) {
    body = html`<h1>${page.title}</h1>${errorBox(ctx.error)}`;
  } else if (ctx.data === undefined) {
    body = html`<h1>${page.title}</h1><p class="muted" aria-live="polite">Loading…</p>`;
  } else {
    try {
      body = page.view(ctx);
    } catch (err) {
      console.error(err);
      body = html`<h1>${page.title}</h1>${errorBox(err)}`;
    }
  }
  render(layout(section, body, !ctx.error && ctx.data === undefined), root);
}

let timers = [];
function stopTimers() {
  timers.forEach(clearInterval);
  timers = [];
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  return { path: path || '/', query: Object.fromEntries(new URLSearchParams(query)) };
}

/** A hash for `path` with `query` (empty values left out). */
export function hashFor(path, query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const text = q.toString();
  return '#' + path + (text ? '?' + text : '');
}

async function route() {
  if (!session) return;
  stopTimers();
  const mine = ++generation;
  const { path, query } = parseHash();
  const found = routes.find(([re]) => re.test(path));
  if (!found) {
    current = {
      page: { title: 'Not found', view: () => nothing },
      ctx: { error: { message: `There is no page ${path}.`, code: 'not_found' } },
      section: null,
    };
    draw();
    return;
  }
  const [re, page, section] = found;
  const params = Object.fromEntries(
    Object.entries(re.exec(path).groups || {}).map(([k, v]) => [k, decodeURIComponent(v)]),
  );
  const ctx = {
    params,
    query,
    session,
    state: {},
    data: undefined,
    error: null,
    /** Whether the signed-in key holds `scope`. */
    can: (scope) => session.scopes.includes(scope),
    /** Draws the page again (after a change of ctx.state). */
    update: () => mine === generation && draw(),
    /** Loads the page's data again, then draws it. */
    reload: async () => {
      try {
        const data = await page.load(ctx);
        if (mine !== generation) return;
        ctx.data = data;
        ctx.error = null;
      } catch (err) {
        if (mine !== generation) return;
        ctx.error = err;
      }
      draw();
    },
    /** Calls `f` every `ms` while the page is shown. */
    every: (ms, f) => timers.push(setInterval(f, ms)),
    /** Goes to another page (or this one with another query). */
    go: (p, q) => {
      location.hash = hashFor(p, q);
    },
  };
  current = { page, ctx, section };
  document.title = `${page.title} · Rapport`;
  draw();
  await ctx.reload();
  if (mine === generation) {
    const h1 = document.querySelector('main h1');
    if (h1 && !document.activeElement?.closest('main')) {
      h1.setAttribute('tabindex', '-1');
      h1.focus({ preventScroll: true });
    }
    page.started?.(ctx);
  }
}

whenSignedOut(signedOut);
window.addEventListener('hashchange', route);

try {
  started(await api('/session'));
} catch (err) {
  signedOut(err.status === 401 ? null : err);
}
