// One journey drawn as a flow: its steps in the order the definition's edges reach them,
// each with the flow's counts (entered, waiting now, exited), the largest stall marked,
// the holdout's lift; the lifecycle buttons the state allows; the definition.
import { api } from '../api.js';
import { html, nothing, errorBox, table, when, num, pct, json } from '../ui.js';

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

const sum = (o) => Object.values(o || {}).reduce((n, x) => n + x, 0);

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

function flowChart(spec, flow) {
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
        <div><dt>Entered</dt><dd data-testid="entered-${id}">${num(n.entered)}</dd></div>
        <div><dt>Waiting now</dt><dd data-testid="waiting-${id}">${num(n.waiting)}</dd></div>
        <div><dt>Exited</dt><dd data-testid="exited-${id}">${num(exited)}</dd></div>
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
  return html`<ol class="flow" aria-label="The journey's steps, layer by layer">
    ${layers(spec).map((layer, i) => html`<li class="flow-layer"><span class="visually-hidden">Layer ${i + 1}</span>
      <ol class="flow-row">${layer.map(box)}</ol></li>`)}
  </ol>`;
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
      </section>`;
  },
};
