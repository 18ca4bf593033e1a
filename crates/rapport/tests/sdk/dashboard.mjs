// The dashboard in headless Chromium, through the flows a user does: sign in, watch live
// events, find a profile by e-mail and read its timeline, create a segment and see it fill,
// create and revoke a key, accept a review pair, delete a person, read the audit trail, sign
// out. On every page: axe-core's checks, no script error, no request to another host, and a
// trait holding markup shown as text (dashboard-harness.mjs). The report also carries
// "session", the session cookie's value, to check that it no longer works, and "accepted",
// the review pair accepted.
//
// usage: node dashboard.mjs <rapport url> <admin key> <e-mail of a seeded profile>
import { harness } from './dashboard-harness.mjs';

const [rapport, adminKey, email] = process.argv.slice(2);
const { page, context, report, step, check, visit, finish } = await harness(rapport);

await finish(async () => {
  // Sign in: a wrong key is refused with the API's message, then the right one opens.
  await page.goto(`${rapport}/`);
  await page.waitForSelector('#key');
  await check('sign-in');
  await page.fill('#key', 'ak_not-a-key');
  await page.click('button[type=submit]');
  await page.waitForSelector('.error');
  const refusal = await page.textContent('.error');
  if (!/unknown or revoked/.test(refusal)) throw new Error(`sign-in refusal: ${refusal}`);
  await page.fill('#key', adminKey);
  await page.click('button[type=submit]');
  await page.waitForSelector('nav[aria-label=Sections]');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'rapport_session');
  if (!session || !session.httpOnly || session.sameSite !== 'Strict') {
    throw new Error(`session cookie: ${JSON.stringify(session)}`);
  }
  if (await page.evaluate(() => document.cookie.includes('rapport_session'))) {
    throw new Error('the session cookie is readable by scripts');
  }
  report.session = session.value;
  step('sign in');
  await page.waitForSelector('text=Processor lag');
  await check('overview');

  // The live stream, filtered by user; the refused message the test sent, with its error.
  await visit('#/events', '#h-refused');
  await page.selectOption('#f-type', 'track');
  await page.fill('#f-user', 'ann');
  await page.click('form[aria-label="Filter events"] button[type=submit]');
  await page.waitForSelector('ol.timeline >> text=Product Viewed');
  await page.waitForSelector('td >> text=missing_field');
  // The same user's events from one source only: the app's, none of the web's.
  await page.selectOption('#f-source', { label: 'ios app' });
  await page.click('form[aria-label="Filter events"] button[type=submit]');
  await page.waitForFunction(() => {
    const list = document.querySelector('ol.timeline');
    return list && list.textContent.includes('App Opened') && !list.textContent.includes('Product Viewed');
  });
  report.from_ios = await page.$$eval('ol.timeline > li', (l) => l.length);
  step('watch live events and refusals');
  await check('events');

  // Find a profile by e-mail; read its timeline, older events included.
  await visit('#/profiles', '#q');
  await check('profiles');
  await page.fill('#q', email);
  await page.press('#q', 'Enter');
  await page.waitForSelector('#h-timeline');
  const heading = await page.textContent('main h1');
  if (!heading.includes('<img src=x onerror=alert(1)>')) throw new Error(`heading: ${heading}`);
  if ((await page.$$('main img')).length > 0) throw new Error('a trait value became an element');
  const first = await page.$$eval('ol.timeline > li', (l) => l.length);
  await page.click('text=Older events');
  await page.waitForFunction((n) => document.querySelectorAll('ol.timeline > li').length > n, first);
  await page.click('ol.timeline > li:first-child summary');
  await page.waitForSelector('ol.timeline > li:first-child pre.json');
  step('find a profile by e-mail and read its timeline');
  await check('profile');

  // Create a segment and see it fill.
  await visit('#/segments', '#seg-name');
  await check('segments');
  await page.fill('#seg-name', 'pro_customers');
  // Checked while typed: the problem first, then the count the segment would have.
  await page.fill('#seg-expression', 'traits.plan = ');
  await page.waitForSelector('.check li.error >> text=expression');
  await page.click('text=Create segment');
  await page.waitForSelector('form .error');
  await page.fill('#seg-expression', 'traits.plan == "pro"');
  await page.waitForSelector('[data-testid=preview-count]');
  report.previewed = Number((await page.textContent('[data-testid=preview-count] strong')).replace(/\D/g, ''));
  await page.click('text=Create segment');
  await page.waitForSelector('h1:text("pro_customers")');
  await page.waitForFunction(
    () => Number(document.querySelector('[data-testid=segment-size]')?.textContent.replace(/\D/g, '')) > 0,
    null,
    { timeout: 20000 },
  );
  await page.waitForSelector('text=Members');
  step('create a segment and see it fill');
  await check('segment');

  // Define a computed trait from parts, previewed while typed, and read it back.
  await visit('#/traits', '#ct-name');
  await page.fill('#ct-name', 'views');
  await page.selectOption('#ct-function', 'count');
  await page.fill('#ct-event', 'Product Viewed');
  await page.waitForSelector('[data-testid=preview-count] >> text=count(event == "Product Viewed")');
  report.trait_previewed = Number((await page.textContent('[data-testid=preview-count] strong')).replace(/\D/g, ''));
  await check('traits');
  await page.click('text=Create computed trait');
  await page.waitForSelector('h1:text("views")');
  await page.waitForSelector('dd >> text=count(event == "Product Viewed")');
  step('define a computed trait and see who it would describe');
  await check('trait');

  // Create a key, see its secret once, revoke it.
  await visit('#/settings', '#key-kind');
  await page.selectOption('#key-kind', 'admin');
  await page.fill('#key-name', 'temporary');
  await page.click('text=Create key');
  await page.waitForSelector('.notice code.secret');
  await page.click('button[aria-label="Revoke temporary"]');
  await page.waitForSelector('tr:has-text("temporary") >> text=revoked');
  step('create and revoke a key');
  await check('settings');

  // Accept the first pair of the review queue, seen side by side.
  await visit('#/identity', '#h-rules');
  await page.waitForSelector('#h-pair');
  report.accepted = (await page.textContent('#h-pair code')).trim();
  await check('identity');
  await page.click('text=Accept: merge them');
  await page.waitForSelector('.notice >> text=accepted');
  step('accept a review pair');

  // Consent across profiles: count who granted a purpose, once its segment has read every
  // profile.
  await visit('#/privacy', '#h-personal');
  await page.fill('#consent-purpose', 'marketing');
  await page.click('form:has(#consent-purpose) button[type=submit]');
  await page.waitForFunction(() => {
    const cell = document.querySelector('[data-testid="granted-marketing"]');
    return cell && /^\d+$/.test(cell.textContent.trim());
  }, null, { timeout: 60000 });
  report.consent_granted = Number(await page.textContent('[data-testid="granted-marketing"]'));
  step('count consent across profiles');

  // Delete a person, suppressing them, and follow the request to its receipt.
  await page.fill('#del-ids', 'email:u1@example.com');
  await page.check('input[name=suppress]');
  await page.click('button:text("Delete")');
  await page.waitForSelector('details.deletion summary >> text=done', { timeout: 60000 });
  await page.click('details.deletion summary');
  await page.waitForSelector('details.deletion[open] td >> text=profiles');
  await page.waitForSelector('td >> text=email');
  step('delete a person and read the receipt');
  await check('privacy');

  // The audit trail holds what this session did.
  await visit('#/audit', 'form[aria-label="Filter the audit trail"]');
  await page.waitForSelector('td code >> text=/deletion/');
  // Every row names the kind of resource it changed.
  const resources = await page.$$eval('main table tbody tr', (rows) => rows.map((r) => r.cells[3].textContent));
  if (resources.some((r) => r.includes('undefined') || !r.trim())) throw new Error(`audit resources: ${resources.join(' | ')}`);
  step('read the audit trail');
  await check('audit');

  // A change without the CSRF token is refused, even with the session cookie.
  const forged = await page.evaluate(async () => {
    const r = await fetch('/api/v1/segments/pro_customers', { method: 'DELETE' });
    return { status: r.status, body: await r.json() };
  });
  if (forged.status !== 403 || forged.body.error.code !== 'csrf_rejected') {
    throw new Error(`forged change: ${JSON.stringify(forged)}`);
  }
  step('a change without the CSRF token is refused');

  // Sign out: the form comes back; the test then presents the old cookie to the API.
  await page.click('text=Sign out');
  await page.waitForSelector('#key');
  if ((await context.cookies()).some((c) => c.name === 'rapport_session')) {
    throw new Error('the session cookie outlived the sign-out');
  }
  step('sign out');
});
