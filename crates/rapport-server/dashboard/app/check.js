// Checking a definition while it is typed: the editor of a segment or a computed trait asks
// `POST …/check` (docs/segments.md#checking-before-saving) a moment after the last
// keystroke and shows what saving would refuse, or how many profiles would match. The
// count is the API's, evaluated as the processor would; nothing is saved.
import { api } from './api.js';
import { html, nothing, num, profileHref, value } from './ui.js';

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
