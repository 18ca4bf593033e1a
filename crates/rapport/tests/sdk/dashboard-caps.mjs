// The frequency caps across journeys and entries by hand, from the dashboard in headless
// Chromium: on the Journeys page a cap whose window is not a duration is refused, shown at
// its row, then a valid one saved; on the page of a journey whose entry is `api`, customers
// entered with entry properties. On every page: axe-core's checks, no script error, no
// request to another host (dashboard-harness.mjs). The report carries "caps_problem" (the
// field of the refusal shown) and "entries_done" (the notice after entering) for the test
// to compare with the API.
//
// usage: node dashboard-caps.mjs <rapport url> <admin key> <journey> <profiles, comma-separated>
import { harness } from './dashboard-harness.mjs';

const [rapport, adminKey, journey, profiles] = process.argv.slice(2);
const { page, report, step, check, visit, signIn, finish } = await harness(rapport);

await finish(async () => {
  await signIn(adminKey);
  step('sign in');

  // A cap per channel: a window that is not a duration is refused at its row, then fixed.
  await visit('#/journeys', '#h-caps');
  await page.click('button:text("Add a cap")');
  await page.fill('#cap-0-tag', 'email');
  await page.fill('#cap-0-max', '2');
  await page.fill('#cap-0-per', 'soon');
  await page.click('button:text("Save the caps")');
  await page.waitForSelector('tr.invalid[data-testid="cap-0"]');
  report.caps_problem = (await page.textContent('#h-caps ~ form .error .code, section[aria-labelledby="h-caps"] .error .code')).trim();
  await check('journeys-caps');
  await page.fill('#cap-0-per', '7d');
  await page.click('button:text("Save the caps")');
  await page.waitForSelector('[data-testid="caps-done"]');
  step('set a frequency cap');

  // Customers entered by hand, with properties for the instance.
  await visit(`#/journeys/${encodeURIComponent(journey)}`, '#h-entries');
  await page.fill('#entry-profiles', profiles.split(',').join('\n'));
  await page.fill('#entry-properties', '{"campaign": "winter"}');
  await page.click('button:text("Enter them")');
  await page.waitForSelector('[data-testid="entries-done"]');
  report.entries_done = (await page.textContent('[data-testid="entries-done"]')).trim();
  step('enter customers by hand');
  await check('journey-entries');
});
