// Which of the forms that build journeys and destinations the dashboard offers a key: it
// signs in, opens the Journeys and Destinations pages and one of each, and reports which
// forms it found ("offers": {form: bool}) for the test to compare with the key's scopes.
// axe-core's checks run on each page (dashboard-harness.mjs).
//
// usage: node dashboard-build-scopes.mjs <rapport url> <admin key> <journey> <destination>
import { harness } from './dashboard-harness.mjs';

const [rapport, key, journey, destination] = process.argv.slice(2);
const { page, report, step, check, visit, signIn, finish } = await harness(rapport);

const has = async (selector) => !!(await page.$(selector));

await finish(async () => {
  await signIn(key);
  step('sign in');
  const offers = {};
  await visit('#/journeys', `[data-testid="inside-${journey}"]`);
  await page.waitForLoadState('networkidle');
  offers.create_journey = await has('#new-journey-definition');
  await visit(`#/journeys/${encodeURIComponent(journey)}`, 'ol.flow li.flow-node');
  await page.waitForLoadState('networkidle');
  offers.edit_draft = await has('#draft-definition');
  offers.preview = await has('#p-version');
  offers.migrate = await has('#h-migrate');
  await check('journey-scopes');
  await visit('#/destinations', `[data-testid="state-${destination}"]`);
  await page.waitForLoadState('networkidle');
  offers.create_destination = await has('#new-destination-definition');
  await visit(`#/destinations/${encodeURIComponent(destination)}`, '#h-backfill');
  await page.waitForLoadState('networkidle');
  offers.edit_destination = await has('#edit-destination-definition');
  offers.backfill = await has('#b-since');
  offers.delete_destination = await has(`button:text("Delete ${destination}")`);
  await check('destination-scopes');
  report.offers = offers;
  step('read the pages');
});
