// Checking a definition while it is typed: the editor of a segment or a computed trait asks
// `POST …/check` (docs/segments.md#checking-before-saving) a moment after the last
// keystroke and shows what saving would refuse, or how many profiles would match. The
// count is the API's, evaluated as the processor would; nothing is saved.
import { api } from './api.js';
import { html, nothing, num, profileHref, value, errorBox } from './ui.js';

const PAUSE_MS = 400;

/**
 * An `@input` handler for a form: after a pause in typing, posts `definition(form)` to
 * `path` and keeps the answer in `ctx.state.check` (errors in `ctx.state.checkError`).
 */
export function checker(ctx, path, definition) {
  let timer = null;
  let asked = 0;
  return (e) => {
    const form = e.currentTarget;
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++asked;
      const body = { definition: definition(form) };
      ctx.state.checking = true;
      ctx.update();
      try {
        const answer = await api(path, { method: 'POST', body });
        if (mine !== asked) return;
        ctx.state.check = answer;
        ctx.state.checkError = null;
      } catch (err) {
        if (mine !== asked) return;
        ctx.state.check = null;
        ctx.state.checkError = err;
      }
      ctx.state.checking = false;
      ctx.update();
    }, PAUSE_MS);
  };
}

/** What the last check found, announced politely to screen readers. */
export function checkView(ctx, noun = 'match') {
  const { check, checkError, checking } = ctx.state;
  let body = nothing;
  if (checkError) {
    body = html`<p class="error">${checkError.message}</p>`;
  } else if (check && !check.valid) {
    body = html`<ul class="problems">${check.errors.map(
      (p) => html`<li class="error"><code>${p.field}</code>: ${p.message}</li>`,
    )}</ul>`;
  } else if (check && check.preview) {
    const p = check.preview;
    body = html`<p class="ok" data-testid="preview-count">
        ${p.exact
          ? html`Valid. <strong>${num(p.matching)}</strong> of ${num(p.profiles_total)} profiles would ${noun} now.`
          : html`Valid. <strong>${num(p.matching)}</strong> of the oldest ${num(p.profiles_read)} profiles (of ${num(p.profiles_total)}) would ${noun}; the full count comes with the backfill after saving.`}
        ${check.value_type ? html` Values are of type <code>${check.value_type}</code>: <code>${check.expression}</code>.` : nothing}
      </p>
      ${p.examples.length
        ? html`<p class="muted">For example: ${p.examples.map(
            (x, i) => html`${i ? ', ' : ''}<a href=${profileHref(x.profile)}>${x.main_identifier || x.profile}</a>${x.computed ? html` (${value(Object.values(x.computed)[0])})` : nothing}`,
          )}</p>`
        : nothing}`;
  }
  return html`<div class="check" aria-live="polite">${body}${checking ? html`<p class="muted">Checking…</p>` : nothing}</div>`;
}

/** Where the docs live, for the help text next to a definition editor. */
export const DOCS = 'https://github.com/rapport-cdp/rapport/blob/main/docs';

/** A JSON definition as typed: `{value}`, or `{error}` saying where it stops being JSON. */
export function parseJson(text) {
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    return { error: { message: `This is not JSON yet: ${err.message}`, code: 'invalid_json', field: null } };
  }
}

/**
 * An `@input` handler for a form whose textarea `name` holds a definition as JSON: at once,
 * whether it is JSON; after a pause in typing, the problems saving it would meet, asked of
 * `path` (a `…/check` route taking the definition itself as its body and answering
 * `{valid, errors: [{field, message}]}`; none: only the JSON is checked). The answer is
 * kept in `ctx.state[key]` as `{checking, valid, problems, error}` for `problemsView`; a
 * body the API cannot read at all (`400` naming a field) counts as one problem.
 */
export function jsonChecker(ctx, path, name, key) {
  let timer = null;
  let asked = 0;
  return (e) => {
    const el = e.currentTarget.elements.namedItem(name);
    if (!el || e.target !== el) return;
    clearTimeout(timer);
    const parsed = parseJson(el.value);
    const mine = ++asked;
    if (parsed.error) {
      ctx.state[key] = { error: parsed.error };
      ctx.update();
      return;
    }
    if (!path) {
      ctx.state[key] = { valid: true, local: true };
      ctx.update();
      return;
    }
    ctx.state[key] = { ...(ctx.state[key] || {}), error: null, checking: true };
    ctx.update();
    timer = setTimeout(async () => {
      let answer;
      try {
        const found = await api(path, { method: 'POST', body: parsed.value });
        answer = { valid: found.valid, problems: found.errors };
      } catch (err) {
        answer = err.status === 400
          ? { valid: false, problems: [{ field: err.field || '(the definition)', message: err.message }] }
          : { error: err };
      }
      if (mine !== asked) return;
      ctx.state[key] = answer;
      ctx.update();
    }, PAUSE_MS);
  };
}

/** What `jsonChecker` found, announced politely: each problem with its field. */
export function problemsView(found, okText = 'Valid: it can be saved.') {
  let body = nothing;
  if (found?.error) {
    body = html`<p class="error">${found.error.message}</p>`;
  } else if (found && found.valid === false) {
    body = html`<ul class="problems" data-testid="problems">${found.problems.map(
      (p) => html`<li class="error"><code>${p.field}</code>: ${p.message}</li>`,
    )}</ul>`;
  } else if (found?.valid && !found.checking) {
    body = html`<p class="ok">${okText}</p>`;
  }
  return html`<div class="check" aria-live="polite">${body}${found?.checking ? html`<p class="muted">Checking…</p>` : nothing}</div>`;
}

/**
 * A definition edited as JSON: a labelled textarea holding `spec`, with `help` (linking the
 * docs) and what `jsonChecker` finds while it is typed (asked of `checkPath`, if any). On
 * submit, `save(parsed)` is called; its error is shown with the API's message and field,
 * and what it returns (a sentence) as the outcome; with `refill`, the textarea then holds
 * `spec` again. `id` keeps the form's state apart.
 */
export function definitionForm(ctx, { id, legend, spec, help, checkPath, submit, save, rows = 16, refill = false }) {
  const s = ctx.state;
  s[`${id}Input`] ??= jsonChecker(ctx, checkPath, 'definition', `${id}Check`);
  const onSubmit = async (e) => {
    e.preventDefault();
    s[`${id}Error`] = null;
    s[`${id}Done`] = null;
    const parsed = parseJson(e.target.elements.namedItem('definition').value);
    if (parsed.error) {
      s[`${id}Error`] = parsed.error;
      ctx.update();
      return;
    }
    try {
      s[`${id}Done`] = await save(parsed.value);
      s[`${id}Check`] = null;
      // A form that stays for the next one (create) starts again from its example.
      if (refill) e.target.elements.namedItem('definition').value = JSON.stringify(spec, null, 2);
    } catch (err) {
      s[`${id}Error`] = err;
    }
    ctx.update();
  };
  const done = s[`${id}Done`];
  return html`<form class="stack" @submit=${onSubmit} @input=${s[`${id}Input`]} aria-labelledby="${id}-legend">
    <fieldset><legend id="${id}-legend">${legend}</legend>
      <label for="${id}-definition">Definition (JSON)</label>
      <p id="${id}-help" class="muted">${help}</p>
      <textarea id="${id}-definition" name="definition" rows=${rows} required spellcheck="false"
        aria-describedby="${id}-help ${id}-check" .value=${JSON.stringify(spec, null, 2)}></textarea>
      <div id="${id}-check">${problemsView(s[`${id}Check`], checkPath ? undefined : 'Valid JSON; the rest is checked on saving.')}</div>
      ${errorBox(s[`${id}Error`])}
      ${done && !s[`${id}Error`] ? html`<p class="notice" role="status">${done}</p>` : nothing}
      <button type="submit">${submit}</button>
    </fieldset>
  </form>`;
}
