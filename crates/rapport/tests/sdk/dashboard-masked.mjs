// The dashboard signed in with a key that holds `read_masked` only: a profile's e-mail
// address, anywhere on the page, shows as *** (the API masks it; the page only draws what
// it gets), and no form offers a change the key may not make. axe-core's checks run on
// each page, as in dashboard.mjs (dashboard-harness.mjs).
//
// usage: node dashboard-masked.mjs <rapport url> <read_masked admin key> <profile id> <e-mail>
import { harness } from './dashboard-harness.mjs';

const [rapport, key, profile, email] = process.argv.slice(2);
const { page, report, step, check, visit, signIn, finish } = await harness(rapport);

await finish(async () => {
  await signIn(key);
  const who = await page.textContent('header .who');
  if (!who.includes('read_masked') || /\bread\b(?!_)/.test(who.replace('read_masked', ''))) {
    throw new Error(`signed in as: ${who}`);
  }
  step('sign in with a read_masked key');

  // The profile: traits, identifiers and the timeline, with the address masked.
  await visit(`#/profiles/${encodeURIComponent(profile)}`, '#h-timeline');
  await page.waitForSelector('ol.timeline > li');
  await page.click('ol.timeline > li:first-child summary');
  await page.waitForSelector('ol.timeline > li:first-child pre.json');
  const text = await page.textContent('main');
  if (text.includes(email)) throw new Error('the e-mail address is on the page');
  if (!text.includes('***')) throw new Error('nothing masked on the page');
  step('read a profile with its personal data masked');
  await check('profile-masked');

  // Reads only: no form to define a segment or create a key.
  await visit('#/segments', 'main h1');
  if (await page.$('#seg-name')) throw new Error('a segment form for a key without configure');
  await visit('#/settings', 'main h1');
  await page.waitForLoadState('networkidle');
  if (await page.$('#key-name')) throw new Error('a key form for a key without configure');
  step('no form offers a change the key may not make');
  await check('settings-masked');
});
