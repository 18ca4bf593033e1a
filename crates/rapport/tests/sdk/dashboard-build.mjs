// Building journeys and destinations from the dashboard, in headless Chromium: a journey
// created from the Journeys page (an invalid definition first, its problem shown with its
// field while typed, then a valid one), published, customers entering it, the draft of
// version 2 saved, previewed and published, its customers migrated from version 1 (first a
// mapping the API refuses, shown at its step, then a valid one); a webhook destination
// created from the Destinations page, edited, backfilled (its progress followed to the
// end), and another destination deleted. On every page: axe-core's checks, no script
// error, no request to another host (dashboard-harness.mjs). The report carries what the
// page showed for the test to compare with the API: "problem" (the field-named problem),
// "preview_entered", "refused" (the step the refusal was shown at, and its message),
// "migrated_in", "secret_shown" (whether the editor held the signing secret),
// "backfill_sent".
//
// usage: node dashboard-build.mjs <rapport url> <admin key> <write key> <invalid definition>
//   <definition v1> <definition v2> <customers> <receiver url> <destination to delete>
import { harness } from './dashboard-harness.mjs';

const [rapport, adminKey, writeKey, invalid, v1, v2, customers, receiverUrl, doomed] = process.argv.slice(2);
const journey = JSON.parse(v1).name;
const { page, report, step, check, visit, signIn, finish } = await harness(rapport);

const figure = async (selector) => Number((await page.textContent(selector)).replace(/\D/g, ''));

/** Replaces the text of a textarea as typing would (an `input` event follows); JSON is
 * laid out as a person would write it. */
async function type(selector, text) {
  let shown = text;
  try {
    shown = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // Not JSON (yet): typed as it is.
  }
  await page.fill(selector, shown);
}

/** Sends `n` "Signed Up" events through the tracking API, as an app would. */
async function signUps(n) {
  const batch = Array.from({ length: n }, (_, i) => ({ type: 'track', userId: `b${i}`, event: 'Signed Up' }));
  const res = await fetch(`${rapport}/v1/batch`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` },
    body: JSON.stringify({ batch }),
  });
  if (!res.ok) throw new Error(`tracking API answered ${res.status}`);
}

/** Reloads until `selector` shows the number `n` (the processor catching up). */
async function until(selector, n, what) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const el = await page.$(selector);
    if (el && Number((await el.textContent()).replace(/\D/g, '')) === n) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await page.waitForTimeout(300);
    await page.reload();
    await page.waitForSelector('main h1');
  }
}

await finish(async () => {
  await signIn(adminKey);
  step('sign in');

  // A journey created from its list: the invalid definition's problem, by field, first.
  await page.click('nav >> text=Journeys');
  await page.waitForSelector('#new-journey-definition');
  if (!(await page.textContent('main .empty')).includes('Write its definition below')) throw new Error('no empty state');
  await type('#new-journey-definition', invalid);
  await page.waitForSelector('#new-journey-check [data-testid="problems"] li');
  report.problem = await page.textContent('#new-journey-check [data-testid="problems"]');
  await type('#new-journey-definition', v1);
  await page.waitForSelector('#new-journey-check .ok');
  await check('journeys-new');
  await page.click('button:text("Create journey")');
  await page.waitForSelector(`main h1:text("${journey}")`);
  await page.waitForSelector('[data-testid="journey-state"]:text("draft")');
  step('create a journey, its problems shown while typed');

  await page.click('button:text("Publish the draft")');
  await page.waitForSelector('[data-testid="journey-state"]:text("active")');
  await signUps(Number(customers));
  await until('[data-testid="waiting-hold"]', Number(customers), 'the customers to wait in version 1');
  step('publish it; customers enter');

  // The draft of version 2, checked while typed and saved.
  await page.waitForSelector('#draft-definition');
  if (!(await page.inputValue('#draft-definition')).includes('"hold"')) throw new Error('the draft editor does not hold version 1');
  await type('#draft-definition', v2);
  await page.waitForSelector('#draft-check .ok');
  await page.click('button:text("Save the draft")');
  await page.waitForSelector('.notice >> text=Draft of version 2 saved');
  step('save a draft of version 2');

  // Its preview over the past day, drawn as a flow.
  if ((await page.inputValue('#p-version')) !== '2') throw new Error('the preview does not offer the draft first');
  await page.click('button:text("Preview")');
  await page.waitForSelector('[data-testid="preview"] ol.flow li.flow-node');
  report.preview_entered = await figure('[data-testid="preview-entered"]');
  report.preview_welcome = await figure('[data-testid="preview-entered-welcome"]');
  step('preview the draft');
  await check('journey-edit');

  await page.click('button:text("Publish the draft")');
  await page.waitForSelector('h2:text("Flow of version 2")');
  await page.waitForSelector('#m-node-hold');
  step('publish version 2');

  // Moving the customers: step `hold` has no namesake in version 2, so the API refuses.
  await page.click('button:text("Move the customers")');
  await page.waitForSelector('tr[data-map-node="hold"] p.error');
  report.refused = {
    node: await page.getAttribute('tr.invalid', 'data-map-node'),
    message: await page.textContent('tr[data-map-node="hold"] p.error'),
  };
  if ((await page.getAttribute('#m-node-hold', 'aria-invalid')) !== 'true') throw new Error('the refused step is not marked invalid');
  await page.selectOption('#m-node-hold', 'pause');
  if (await page.$('tr[data-map-node="hold"] p.error')) throw new Error('the refusal stays after a change');
  await page.click('button:text("Move the customers")');
  await page.waitForSelector('[data-testid="migrate-done"]');
  await page.waitForSelector('[data-testid="journey-migrated-in"]');
  report.migrated_in = await figure('[data-testid="journey-migrated-in"]');
  step('migrate version 1 to version 2');
  await check('journey-migrate');

  // A webhook created from the destinations list; its secret shown once, the form ready for
  // the next one.
  await page.click('nav >> text=Destinations');
  await page.waitForSelector('#new-destination-definition');
  await type('#new-destination-definition', '{"name": "crm", "kind": {"type": "webhook", "url": ');
  await page.waitForSelector('#new-destination-check .error');
  const crm = { name: 'crm', kind: { type: 'webhook', url: receiverUrl, timeout_secs: 5 } };
  await type('#new-destination-definition', JSON.stringify(crm));
  await page.waitForSelector('#new-destination-check .ok');
  await page.click('button:text("Create destination")');
  await page.waitForSelector('[data-testid="created"] code.secret');
  await page.waitForSelector('[data-testid="state-crm"]');
  if ((await page.inputValue('#new-destination-definition')).includes(receiverUrl)) throw new Error('the form still holds the created definition');
  step('create a webhook destination');
  await check('destinations-new');

  // Edited on its page: the editor holds the definition, never the secret.
  await page.click('[data-testid="created"] a');
  await page.waitForSelector('#edit-destination-definition');
  const shown = await page.inputValue('#edit-destination-definition');
  report.secret_shown = shown.includes('whsec') || shown.includes('"secret"');
  const edited = JSON.parse(shown);
  edited.kind.timeout_secs = 7;
  edited.kind.headers = { 'X-Source': 'dashboard' };
  await type('#edit-destination-definition', JSON.stringify(edited, null, 2));
  await page.click('#edit-destination-definition ~ button:text-is("Save")');
  await page.waitForSelector('.notice >> text=crm saved');
  step('edit the destination');
  await check('destination-edit');

  // A backfill of the past day, followed on the page until it has finished, then forgotten.
  await page.click('button:text("Start the backfill")');
  await page.waitForSelector('[data-testid="backfill"]');
  await page.waitForSelector('[data-testid="backfill-state"]:text("finished")', { timeout: 30000 });
  report.backfill_sent = await figure('[data-testid="backfill-sent"]');
  step('backfill the destination');
  await check('destination-backfill');
  await page.click('button:text("Forget this backfill")');
  await page.waitForSelector('text=No backfill yet');
  step('forget the finished backfill');

  // Another destination deleted, after the confirmation.
  await visit(`#/destinations/${encodeURIComponent(doomed)}`, 'main h1');
  await page.click(`button:text("Delete ${doomed}")`);
  await page.waitForSelector('[data-testid="deleted"]');
  if (await page.$(`[data-testid="state-${doomed}"]`)) throw new Error('the deleted destination is still listed');
  step('delete a destination');
});
