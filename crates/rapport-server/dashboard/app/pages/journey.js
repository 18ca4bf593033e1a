// One journey drawn as a flow: its steps in the order the definition's edges reach them,
// each with the flow's counts (entered, waiting now, exited), the largest stall marked,
// the holdout's lift; the lifecycle buttons the state allows; the definition. With
// `configure`: the draft of the next version edited (checked while typed), and customers
// migrated from one published version to another; for every reader, a preview of a version
// over a past range, drawn with the same flow.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, num, pct, json, field, stat } from '../ui.js';
import { definitionEditor } from './journeys.js';

/** Every node a node leads to, with the name of the way: [[label, node]]. */
function successors(node) {
  const out = [];
  const add = (label, next) => next && out.push([label, next]);
  switch (node.type) {
    case 'wait_for_event':
      (node.branches || []).forEach((b, i) => add(b.name || `branch ${i + 1}`, b.next));
      add('timeout', node.timeout_next);
      break;
    case 'wait_for_condition':
      add('condition holds', node.next);
      add('timeout', node.timeout_next);
      break;
    case 'branch':
      (node.cases || []).forEach((c, i) => add(c.name || `case ${i + 1}`, c.next));
      add('else', node.else);
      break;
    case 'split':
      (node.arms || []).forEach((a) => add(`${a.name} (${a.weight})`, a.next));
      break;
    default:
      add('next', node.next);
  }
  return out;
}

/** The nodes in layers: the start, then what each layer leads to first (breadth first). */
function layers(spec) {
  const seen = new Set([spec.start]);
  const out = [];
  let layer = [spec.start];
  while (layer.length) {
    out.push(layer);
    const nextLayer = [];
    for (const id of layer) {
      for (const [, to] of successors(spec.nodes[id] || {})) {
        if (!seen.has(to) && spec.nodes[to]) {
          seen.add(to);
          nextLayer.push(to);
        }
      }
    }
    layer = nextLayer;
  }
  const unreached = Object.keys(spec.nodes).filter((id) => !seen.has(id));
  if (unreached.length) out.push(unreached);
  return out;
}

/** What a step does, in a few words. */
function summary(node) {
  switch (node.type) {
    case 'wait': return `wait ${node.duration}`;
    case 'wait_until': return 'wait until a moment';
    case 'wait_for_event': return `wait for an event, at most ${node.timeout}`;
    case 'wait_for_condition': return `wait for ${node.condition}, at most ${node.timeout}`;
    case 'branch': return 'branch on the profile';
    case 'split': return 'random split';
    case 'send': return `send to ${node.destination}`;
    case 'set_trait': return `set trait ${node.trait}`;
    case 'remove_trait': return `remove trait ${node.trait}`;
    case 'emit': return `emit ${node.event}`;
    case 'exit': return 'exit';
    default: return node.type;
  }
}

/**
 * The flow of `spec` with the counts of `flow` (one version of `…/flow`, or a preview's
 * `flow`); `prefix` keeps the test ids of two flows on one page apart.
 */
function flowChart(spec, flow, prefix = '', label = "The journey's steps, layer by layer") {
  const nodes = flow?.nodes || {};
  let stall = null;
  for (const [id, n] of Object.entries(nodes)) {
    if (n.waiting > 0 && (!stall || n.waiting > nodes[stall].waiting)) stall = id;
  }
  const box = (id) => {
    const node = spec.nodes[id];
    const n = nodes[id] || { entered: 0, waiting: 0, exited: {}, to: {}, passed: 0, skipped: {}, actions: 0 };
    const exited = sum(n.exited);
    return html`<li class="flow-node ${id === stall ? 'stall' : ''}" data-node=${id}>
      <h3>${id}${id === spec.start ? html` <span class="badge">start</span>` : nothing}</h3>
      <p class="muted">${summary(node)}</p>
      ${id === stall ? html`<p class="stall-note"><strong>Largest stall</strong>: ${num(n.waiting)} waiting here</p>` : nothing}
      <dl class="counts">
        <div><dt>Entered</dt><dd data-testid="${prefix}entered-${id}">${num(n.entered)}</dd></div>
        <div><dt>Waiting now</dt><dd data-testid="${prefix}waiting-${id}">${num(n.waiting)}</dd></div>
        <div><dt>Exited</dt><dd data-testid="${prefix}exited-${id}">${num(exited)}</dd></div>
      </dl>
      ${n.actions ? html`<p class="muted">${num(n.actions)} ${node.type === 'send' ? 'messages' : 'actions'}${sum(n.skipped) ? html`, ${num(sum(n.skipped))} messages skipped` : nothing}</p>` : nothing}
      ${n.median_seconds != null ? html`<p class="muted">Time here: median ${num(n.median_seconds)} s, p90 ${num(n.p90_seconds)} s</p>` : nothing}
      ${exited ? html`<p class="muted">Exits: ${Object.entries(n.exited).map(([r, c]) => `${r} ${num(c)}`).join(', ')}</p>` : nothing}
      <ul class="edges" aria-label="Where customers go from ${id}">
        ${successors(node).map(([label, to]) => html`<li>→ <strong>${to}</strong> <span class="muted">(${label})</span>: ${num(n.to?.[to] ?? 0)}</li>`)}
        ${successors(node).length === 0 ? html`<li class="muted">ends the journey</li>` : nothing}
      </ul>
    </li>`;
  };
  return html`<ol class="flow" aria-label=${label}>
    ${layers(spec).map((layer, i) => html`<li class="flow-layer"><span class="visually-hidden">Layer ${i + 1}</span>
      <ol class="flow-row">${layer.map(box)}</ol></li>`)}
  </ol>`;
}

/** A time as a `datetime-local` input shows it (the reader's zone, to the second). */
function localInput(date) {
  return new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

/** A `datetime-local` input's value as RFC 3339 (UTC); empty: now. */
function rfc3339(value) {
  return (value ? new Date(value) : new Date()).toISOString();
}

const sum = (o) => Object.values(o || {}).reduce((n, x) => n + x, 0);

/** The draft of the next version, edited as JSON and saved with `PUT …/draft`. */
function draftSection(ctx, journey, base) {
  const s = ctx.state;
  const versions = journey.versions;
  const draft = versions.find((v) => v.state === 'draft');
  const latest = draft || versions[versions.length - 1];
  const next = draft ? draft.version : latest.version + 1;
  return html`<section aria-labelledby="h-draft"><h2 id="h-draft">Draft of version ${next}</h2>
    <p class="muted">${draft
      ? html`Version ${draft.version} is a draft: saving replaces it. Publishing it (above) makes it live for new entries.`
      : html`Starts from version ${latest.version}. Saving makes version ${next} a draft; customers inside keep the version they entered with until you publish and, if you like, migrate them.`}</p>
    ${definitionEditor(ctx, {
      id: 'draft',
      legend: `Definition of version ${next}`,
      spec: latest.spec,
      submit: 'Save the draft',
      draft: true,
      save: async (spec) => {
        const j = await api(`${base}/draft`, { method: 'PUT', body: spec });
        const saved = j.versions.find((v) => v.state === 'draft');
        s.previewVersion = saved?.version;
        await ctx.reload();
        return `Draft of version ${saved ? saved.version : next} saved: preview it below, publish it above.`;
      },
    })}
  </section>`;
}

/** Runs a version over a past range (`POST …/preview`) and shows what it would have done. */
function previewSection(ctx, journey, base) {
  const s = ctx.state;
  const versions = journey.versions;
  const draft = versions.find((v) => v.state === 'draft');
  const chosen = s.previewVersion ?? draft?.version ?? journey.live_version ?? versions[versions.length - 1].version;
  s.previewFrom ??= localInput(new Date(Date.now() - 7 * 86400000));
  const run = async (e) => {
    e.preventDefault();
    const form = e.target;
    s.previewError = null;
    s.previewing = true;
    ctx.update();
    try {
      const version = Number(field(form, 'version'));
      s.previewVersion = version;
      s.previewFrom = field(form, 'from');
      s.preview = await api(`${base}/preview`, {
        method: 'POST',
        body: { version, from: rfc3339(field(form, 'from')), to: rfc3339(field(form, 'to')) },
      });
    } catch (err) {
      s.preview = null;
      s.previewError = err;
    }
    s.previewing = false;
    ctx.update();
  };
  const p = s.preview;
  const pv = p && versions.find((v) => v.version === p.version);
  return html`<section aria-labelledby="h-preview"><h2 id="h-preview">Preview</h2>
    <p class="muted">Runs a version over the events received in a past range, as the processor would, with customers as they are now. Nothing is written and nothing is sent.</p>
    <form class="inline" @submit=${run} aria-label="Preview a version">
      <label for="p-version">Version</label>
      <select id="p-version" name="version">${versions.map((v) => html`<option value=${v.version} ?selected=${v.version === chosen}>${v.version} (${v.state})</option>`)}</select>
      <label for="p-from">From</label>
      <input id="p-from" name="from" type="datetime-local" step="1" required .value=${s.previewFrom}>
      <label for="p-to">To</label>
      <input id="p-to" name="to" type="datetime-local" step="1" aria-describedby="p-to-help">
      <span id="p-to-help" class="muted">(empty: now)</span>
      <button type="submit" ?disabled=${s.previewing}>Preview</button>
    </form>
    ${errorBox(s.previewError)}
    ${s.previewing ? html`<p class="muted" aria-live="polite">Running the preview…</p>` : nothing}
    ${p ? html`<div data-testid="preview" aria-live="polite">
        <p>Version <strong>${p.version}</strong> from ${when(p.from)} to ${when(p.to)}: ${num(p.log_entries_read)} log entries read.</p>
        <div class="stats">
          ${stat('Would have entered', html`<span data-testid="preview-entered">${num(p.flow.entered)}</span>`, p.flow.holdout_entered ? `+ ${num(p.flow.holdout_entered)} held out` : null)}
          ${stat('Inside at the end', html`<span data-testid="preview-active">${num(p.flow.active)}</span>`)}
          ${stat('Converted', num(p.flow.converted))}
          ${stat('Messages', html`<span data-testid="preview-messages">${num(sum(p.messages))}</span>`)}
          ${stat('Skipped', num(sum(p.skipped)))}
          ${stat('Trait changes', html`<span data-testid="preview-trait-changes">${num(p.trait_changes)}</span>`)}
          ${stat('Events run', num(p.events), `${num(p.segment_changes)} segment changes; ${num(p.profiles)} customers`)}
        </div>
        <div class="grid">
          <div><h3>Messages by destination</h3>${table('Messages by destination', [['Destination', (r) => r[0]], ['Messages', (r) => num(r[1])]], Object.entries(p.messages), 'No message would have been sent.')}</div>
          <div><h3>Skipped by reason</h3>${table('Messages skipped by reason', [['Reason', (r) => r[0]], ['Messages', (r) => num(r[1])]], Object.entries(p.skipped), 'No message would have been skipped.')}</div>
          <div><h3>Events emitted</h3>${table('Events emitted', [['Event', (r) => r[0]], ['Count', (r) => num(r[1])]], Object.entries(p.emitted), 'No event would have been emitted.')}</div>
          <div><h3>Exits by reason</h3>${table('Exits by reason', [['Reason', (r) => r[0]], ['Customers', (r) => num(r[1])]], Object.entries(p.flow.exited), 'No one would have left yet.')}</div>
        </div>
        ${p.notes.length ? html`<h3>What the preview approximates</h3><ul class="notes">${p.notes.map((n) => html`<li>${n}</li>`)}</ul>` : nothing}
        ${pv ? html`<h3>Flow of the preview</h3>${flowChart(pv.spec, p.flow, 'preview-', `The preview of version ${p.version}, layer by layer`)}` : nothing}
      </div>` : nothing}
  </section>`;
}

/** Moves the customers of one published version to another (`POST …/migrate`). */
function migrateSection(ctx, journey, base, flow) {
  const s = ctx.state;
  const published = journey.versions.filter((v) => v.state !== 'draft');
  if (published.length < 2) {
    return html`<section aria-labelledby="h-migrate"><h2 id="h-migrate">Move customers to another version</h2>
      <p class="muted">Once two versions are published, customers inside the older one can be moved to the newer one here.</p></section>`;
  }
  const m = (s.migrate ??= { map: {} });
  const fromV = published.find((v) => v.version === m.from) || published[published.length - 2];
  const toV = published.find((v) => v.version === m.to) || published[published.length - 1];
  const toNodes = Object.keys(toV.spec.nodes);
  const image = (node) => m.map[`${fromV.version}:${toV.version}:${node}`] ?? (toNodes.includes(node) ? node : '');
  const err = s.migrateError;
  const errorAt = (f) => (err && err.field === f ? err : null);
  const general = err && !(err.field === 'from_version' || err.field === 'to_version' || (err.field || '').startsWith('nodes.')) ? err : null;
  const waiting = (version, node) => flow.versions.find((v) => v.version === version)?.nodes?.[node]?.waiting ?? 0;
  const change = (e) => {
    const el = e.target;
    if (el.name === 'from_version') m.from = Number(el.value);
    else if (el.name === 'to_version') m.to = Number(el.value);
    else if (el.dataset.node) m.map[`${fromV.version}:${toV.version}:${el.dataset.node}`] = el.value;
    s.migrateError = null;
    ctx.update();
  };
  const submit = async (e) => {
    e.preventDefault();
    s.migrateError = null;
    s.migrateDone = null;
    const nodes = {};
    for (const node of Object.keys(fromV.spec.nodes)) if (image(node)) nodes[node] = image(node);
    const before = flow.versions.find((v) => v.version === toV.version)?.migrated_in ?? 0;
    try {
      const r = await api(`${base}/migrate`, { method: 'POST', body: { from_version: fromV.version, to_version: toV.version, nodes } });
      s.migrateDone = `Migration from version ${fromV.version} to version ${toV.version} accepted (request ${r.request}): the processor moves the customers inside in log order.`;
      ctx.update();
      // The flow counts them once the processor has applied it: follow it for a while.
      for (let i = 0; i < 20; i += 1) {
        await new Promise((done) => setTimeout(done, 500));
        await ctx.reload();
        const now = ctx.data?.flow?.versions.find((v) => v.version === toV.version)?.migrated_in ?? 0;
        if (now > before) break;
      }
    } catch (error) {
      s.migrateError = error;
      ctx.update();
    }
  };
  const fieldError = (e, id) => (e ? html`<p class="error" id=${id} role="alert">${e.message}</p>` : nothing);
  return html`<section aria-labelledby="h-migrate"><h2 id="h-migrate">Move customers to another version</h2>
    <p class="muted">Each customer inside the old version goes to the image of the step they are on, keeping their time there and their timer.
      Every step where a customer can be (the waits, and sends a quiet hour holds) needs an image that can hold them; a step left at “none” has none.</p>
    <form class="stack" @submit=${submit} @change=${change} aria-labelledby="h-migrate">
      <fieldset><legend>Versions</legend>
        <label for="m-from">From version</label>
        <select id="m-from" name="from_version" aria-invalid=${errorAt('from_version') ? 'true' : 'false'} aria-describedby=${errorAt('from_version') ? 'm-from-error' : nothing}>${published.map((v) => html`<option value=${v.version} ?selected=${v.version === fromV.version}>${v.version} (${v.state})</option>`)}</select>
        ${fieldError(errorAt('from_version'), 'm-from-error')}
        <label for="m-to">To version</label>
        <select id="m-to" name="to_version" aria-invalid=${errorAt('to_version') ? 'true' : 'false'} aria-describedby=${errorAt('to_version') ? 'm-to-error' : nothing}>${published.map((v) => html`<option value=${v.version} ?selected=${v.version === toV.version}>${v.version} (${v.state})</option>`)}</select>
        ${fieldError(errorAt('to_version'), 'm-to-error')}
      </fieldset>
      <fieldset><legend>Where each step of version ${fromV.version} goes in version ${toV.version}</legend>
        <table class="mapping">
          <caption class="visually-hidden">Steps of version ${fromV.version} and their images in version ${toV.version}</caption>
          <thead><tr><th scope="col">Step of version ${fromV.version}</th><th scope="col">Waiting there now</th><th scope="col">Goes to</th></tr></thead>
          <tbody>${Object.entries(fromV.spec.nodes).map(([node, spec]) => {
            const e = errorAt(`nodes.${node}`);
            return html`<tr data-map-node=${node} class=${e ? 'invalid' : ''}>
              <th scope="row"><label for="m-node-${node}">${node}</label> <span class="muted">(${summary(spec)})</span></th>
              <td>${num(waiting(fromV.version, node))}</td>
              <td><select id="m-node-${node}" name="node-${node}" data-node=${node} aria-invalid=${e ? 'true' : 'false'} aria-describedby=${e ? `m-node-${node}-error` : nothing}>
                  <option value="" ?selected=${image(node) === ''}>none (the same name, if any)</option>
                  ${toNodes.map((t) => html`<option value=${t} ?selected=${image(node) === t}>${t} (${summary(toV.spec.nodes[t])})</option>`)}
                </select>
                ${fieldError(e, `m-node-${node}-error`)}</td>
            </tr>`;
          })}</tbody>
        </table>
      </fieldset>
      ${errorBox(general)}
      ${s.migrateDone && !err ? html`<p class="notice" role="status" data-testid="migrate-done">${s.migrateDone}</p>` : nothing}
      <button type="submit">Move the customers</button>
    </form>
  </section>`;
}

/**
 * Enters customers by hand into a journey whose entry is `api` (`POST …/entries`): one
 * profile reference per line, optional entry properties as a JSON object.
 */
function entriesSection(ctx, journey, base) {
  const s = ctx.state;
  const submit = async (e) => {
    e.preventDefault();
    s.entryError = null;
    s.entryDone = null;
    const profiles = field(e.target, 'profiles').split(/[\n,]+/).map((x) => x.trim()).filter(Boolean);
    const text = field(e.target, 'properties');
    try {
      let properties;
      if (text) {
        try {
          properties = JSON.parse(text);
        } catch (err) {
          throw Object.assign(new Error(`The properties are not JSON: ${err.message}`), { field: 'properties' });
        }
      }
      const r = await api(`${base}/entries`, { method: 'POST', body: { profiles, properties } });
      s.entryDone = `${r.entries.length} ${r.entries.length === 1 ? 'entry' : 'entries'} accepted: the processor enters them in log order, under the journey's re-entry rules, limits and holdout; each profile's timeline says what happened.`;
      e.target.reset();
      ctx.update();
      setTimeout(() => ctx.reload(), 1000);
    } catch (error) {
      s.entryError = error;
      ctx.update();
    }
  };
  return html`<section aria-labelledby="h-entries"><h2 id="h-entries">Enter customers</h2>
    <p class="muted">This journey's entry is <code>api</code>: customers enter when asked, here or with <code>POST ${base}/entries</code>.</p>
    <form class="stack" @submit=${submit} aria-labelledby="h-entries">
      <label for="entry-profiles">Profiles (a profile id or <code>type:value</code>, one per line)</label>
      <textarea id="entry-profiles" name="profiles" rows="4" required placeholder="user_id:42&#10;email:ann@example.com"></textarea>
      <label for="entry-properties">Entry properties (a JSON object, optional: the instance's <code>entry.properties</code>)</label>
      <textarea id="entry-properties" name="properties" rows="3" placeholder='{"campaign": "winter"}'></textarea>
      ${errorBox(s.entryError)}
      ${s.entryDone && !s.entryError ? html`<p class="notice" role="status" data-testid="entries-done">${s.entryDone}</p>` : nothing}
      <button type="submit">Enter them</button>
    </form>
  </section>`;
}

export default {
  title: 'Journey',
  async load(ctx) {
    const name = encodeURIComponent(ctx.params.name);
    const [journey, flow] = await Promise.all([api(`/api/v1/journeys/${name}`), api(`/api/v1/journeys/${name}/flow`)]);
    return { journey, flow };
  },
  view(ctx) {
    const { journey, flow } = ctx.data;
    const s = ctx.state;
    const versions = journey.versions;
    const chosenNumber = Number(ctx.query.version) || journey.live_version || versions[versions.length - 1].version;
    const version = versions.find((v) => v.version === chosenNumber) || versions[versions.length - 1];
    const vflow = flow.versions.find((v) => v.version === version.version);
    const base = `/api/v1/journeys/${encodeURIComponent(journey.name)}`;
    const act = (verb) => async () => {
      s.error = null;
      s.done = null;
      if (verb === 'archive' && !confirm(`Archive ${journey.name}? Customers inside exit, and it cannot be published again.`)) return;
      try {
        const out = await api(`/api/v1/journeys/${encodeURIComponent(journey.name)}/${verb}`, { method: 'POST' });
        s.done = `${journey.name} is ${out.status}.`;
        await ctx.reload();
      } catch (err) {
        s.error = err;
        ctx.update();
      }
    };
    const allowed = {
      draft: ['publish'],
      active: ['pause', 'archive'],
      paused: ['resume', 'archive'],
      archived: [],
    }[journey.status] || [];
    if (journey.status !== 'archived' && versions.some((v) => v.state === 'draft') && !allowed.includes('publish')) {
      allowed.unshift('publish');
    }
    const labels = { publish: 'Publish the draft', pause: 'Pause', resume: 'Resume', archive: 'Archive' };
    const lift = vflow?.lift;
    return html`<h1>${journey.name}</h1>
      <div class="stats">
        <div class="stat"><div class="label">State</div><div class="figure" data-testid="journey-state">${journey.status}</div></div>
        <div class="stat"><div class="label">Live version</div><div class="figure">${journey.live_version ?? '—'}</div></div>
        <div class="stat"><div class="label">Inside now</div><div class="figure" data-testid="journey-active">${num(vflow?.active ?? 0)}</div><div class="note">version ${version.version}</div></div>
        <div class="stat"><div class="label">Entered</div><div class="figure" data-testid="journey-entered">${num(vflow?.entered ?? 0)}</div>${vflow?.holdout_entered ? html`<div class="note">+ ${num(vflow.holdout_entered)} held out</div>` : nothing}</div>
        <div class="stat"><div class="label">Converted</div><div class="figure">${num(vflow?.converted ?? 0)}</div>${vflow?.holdout_entered ? html`<div class="note">holdout ${num(vflow.holdout_converted)}</div>` : nothing}</div>
        ${vflow?.migrated_in ? html`<div class="stat"><div class="label">Migrated in</div><div class="figure" data-testid="journey-migrated-in">${num(vflow.migrated_in)}</div><div class="note">moved from an earlier version</div></div>` : nothing}
      </div>
      ${errorBox(s.error)}
      ${s.done && !s.error ? html`<p class="notice" role="status">${s.done}</p>` : nothing}
      ${ctx.can('configure')
        ? allowed.length ? html`<div class="actions">${allowed.map((verb) => html`<button class=${verb === 'archive' ? 'danger' : ''} @click=${act(verb)}>${labels[verb]}</button>`)}</div>` : nothing
        : html`<p class="muted">Publishing, pausing and archiving need a key with the <code>configure</code> scope.</p>`}
      ${versions.length > 1
        ? html`<form class="inline" aria-label="Choose a version" @change=${(e) => ctx.go(`/journeys/${encodeURIComponent(journey.name)}`, { version: e.target.value })}>
            <label for="j-version">Version</label>
            <select id="j-version" name="version">${versions.map((v) => html`<option value=${v.version} ?selected=${v.version === version.version}>${v.version} (${v.state})</option>`)}</select>
          </form>`
        : nothing}
      <section aria-labelledby="h-flow"><h2 id="h-flow">Flow of version ${version.version} <span class="muted">(${version.state})</span></h2>
        ${vflow
          ? nothing
          : html`<p class="muted">No customer has entered version ${version.version} yet${version.state === 'draft' ? ': it is a draft; publish it to take entries' : ''}.</p>`}
        ${flowChart(version.spec, vflow)}
        ${vflow && Object.keys(vflow.exited).length
          ? html`<p>Exited the journey: ${Object.entries(vflow.exited).map(([r, c]) => html`<span class="badge">${r} ${num(c)}</span> `)}</p>`
          : nothing}
      </section>
      <section aria-labelledby="h-lift"><h2 id="h-lift">Holdout</h2>
        ${lift
          ? html`<p data-testid="lift">Lift <strong>${lift.difference >= 0 ? '+' : ''}${(lift.difference * 100).toFixed(1)} pp</strong>
              (95 % interval ${(lift.low * 100).toFixed(1)} to ${(lift.high * 100).toFixed(1)} pp):
              treated ${pct(lift.treated_rate)} of ${num(vflow.entered)}, holdout ${pct(lift.holdout_rate)} of ${num(vflow.holdout_entered)}.</p>`
          : html`<p class="muted">${version.spec.holdout_percent
              ? 'The lift shows once both the treated customers and the holdout have entries.'
              : 'This version holds no one out (holdout_percent is 0), so it has no lift to show.'}</p>`}
      </section>
      ${vflow && Object.keys(vflow.ways).length
        ? html`<section aria-labelledby="h-ways"><h2 id="h-ways">Ways taken at each choice</h2>
            ${table('Ways taken at each choice', [
              ['Step', (w) => w[0]],
              ['Way', (w) => w[1]],
              ['Customers', (w) => num(w[2].entered)],
              ['Converted', (w) => num(w[2].converted)],
            ], Object.entries(vflow.ways).flatMap(([node, ways]) => Object.entries(ways).map(([way, f]) => [node, way, f])))}
          </section>`
        : nothing}
      <section aria-labelledby="h-versions"><h2 id="h-versions">Versions</h2>
        ${table('Versions', [
          ['Version', (v) => v.version],
          ['State', (v) => v.state],
          ['Created', (v) => when(v.created_at)],
          ['Published', (v) => when(v.published_at)],
        ], versions)}
        <details><summary>Definition of version ${version.version} (JSON)</summary>${json(version.spec)}</details>
      </section>
      ${ctx.can('configure') && journey.status !== 'archived' ? draftSection(ctx, journey, base) : nothing}
      ${previewSection(ctx, journey, base)}
      ${ctx.can('configure') && journey.status === 'active' && versions.find((v) => v.version === journey.live_version)?.spec.entry?.type === 'api'
        ? entriesSection(ctx, journey, base)
        : nothing}
      ${ctx.can('configure') ? migrateSection(ctx, journey, base, flow) : nothing}`;
  },
};
