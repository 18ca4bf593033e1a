// The Value page in headless Chromium: sign in, read the empty states, start the CLV fit
// from the page and follow it until it succeeds, then health and churn, and read figures
// back (dashboard-harness.mjs). The report's "figures" carries what the page showed:
// customers scored, the NPS, and how the churn fit ended.
//
// usage: node dashboard-value.mjs <rapport url> <admin key>
import { harness } from './dashboard-harness.mjs';

const [rapport, adminKey] = process.argv.slice(2);
const { page, report, step, check, visit, signIn, finish } = await harness(rapport);
report.figures = {};

async function fit(model) {
  await page.click(`[data-testid=fit-${model}]`);
  await page.waitForSelector(`[data-testid=job-${model}]:not([role=status]):is(.error), .notice[data-testid=job-${model}]`, { timeout: 120000 });
  const text = await page.textContent(`[data-testid=job-${model}]`);
  await page.waitForLoadState('networkidle');
  return text;
}

await finish(async () => {
  await signIn(adminKey);
  step('sign in');
  await visit('#/value', '#h-clv');
  await page.waitForSelector('text=No CLV fit yet');
  report.figures.nps_before = await page.textContent('[data-testid=nps-overall]').catch(() => null);
  step('empty states say what to do');
  await check('value-empty');

  const clv = await fit('clv');
  if (!/succeeded/.test(clv)) throw new Error(`CLV fit: ${clv}`);
  await page.waitForSelector('[data-testid=clv-customers]');
  report.figures.customers = await page.textContent('[data-testid=clv-customers]');
  step('fit CLV from the page');
  const health = await fit('health');
  report.figures.health = health;
  step('fit health from the page');
  const churn = await fit('churn');
  report.figures.churn = churn;
  step('fit churn from the page');
  await page.waitForSelector('[data-testid=nps-overall]');
  report.figures.nps = await page.textContent('[data-testid=nps-overall]');
  step('read figures');
  await check('value');
});
