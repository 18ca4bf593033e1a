// The dashboard's Journeys and Destinations pages in headless Chromium: list the journeys,
// read one's flow (its counts and its largest stall), pause it; list the destinations,
// read one's dead letters, replay one and then all, send a test message, pause it. On every
// page: axe-core's checks, no script error, no request to another host
// (dashboard-harness.mjs). The report also carries what the page showed — "inside" (the
// journeys list), "entered" and "waiting" (the flow's first step and its stall), "stall"
// (the step marked) — for the test to compare with the API.
//
// usage: node dashboard-act.mjs <rapport url> <admin key> <journey> <destination>
import { harness } from './dashboard-harness.mjs';

const [rapport, adminKey, journey, destination] = process.argv.slice(2);
const { page, report, step, check, visit, signIn, finish } = await harness(rapport);

const figure = async (selector) => Number((await page.textContent(selector)).replace(/\D/g, ''));

await finish(async () => {
  await signIn(adminKey);
  step('sign in');

  // The journeys, with how many customers are inside each.
  await page.click('nav >> text=Journeys');
  await page.waitForSelector(`[data-testid="inside-${journey}"]`);
  report.inside = await figure(`[data-testid="inside-${journey}"]`);
  step('list the journeys');
  await check('journeys');

  // One journey drawn as a flow: counts on every step, the largest stall marked.
  await page.click(`main a >> text=${journey}`);
  await page.waitForSelector('ol.flow li.flow-node');
  report.entered = await figure('[data-testid="entered-welcome"]');
  report.waiting = await figure('[data-testid="waiting-wait_activation"]');
  report.stall = await page.getAttribute('li.flow-node.stall', 'data-node');
  await page.click('text=Definition of version');
  await page.waitForSelector('details[open] pre.json');
  step("read a journey's flow");
  await check('journey');

  // Paused from the page: the state the API answers, and only the buttons it now allows.
  await page.click('button:text("Pause")');
  await page.waitForSelector('[data-testid="journey-state"]:text("paused")');
  await page.waitForSelector('button:text("Resume")');
  if (await page.$('button:text("Pause")')) throw new Error('a paused journey still offers Pause');
  step('pause a journey');

  // The destinations, with their delivery at a glance.
  await page.click('nav >> text=Destinations');
  await page.waitForSelector(`[data-testid="state-${destination}"]`);
  step('list the destinations');
  await check('destinations');

  // One destination: the hourly chart, its dead letters with their errors.
  await page.click(`main a >> text=${destination}`);
  await page.waitForSelector('#h-dead');
  await page.waitForSelector('r-chart canvas');
  const dead = await figure('[data-testid="dead-letters"]');
  if (!(dead > 1)) throw new Error(`dead letters shown: ${dead}`);
  await page.click('details.letter summary');
  await page.waitForSelector('details.letter[open] >> text=Error:');
  step("read a destination's dead letters");
  await check('destination');

  // Replay the first letter alone, then all the others; they are then delivered.
  await page.click('ul.letters button:text("Replay")');
  await page.waitForSelector('.notice >> text=1 put back for delivery');
  await page.waitForFunction(
    (n) => Number(document.querySelector('[data-testid="dead-letters"]').textContent.replace(/\D/g, '')) === n - 1,
    dead,
  );
  await page.click('button:text("Replay all")');
  await page.waitForSelector(`.notice >> text=${dead - 1} dead letters put back`);
  await page.waitForSelector('text=The dead-letter queue is empty.');
  const deadline = Date.now() + 30000;
  while ((await figure('[data-testid="delivered"]')) < dead) {
    if (Date.now() > deadline) throw new Error('the replayed letters were not delivered');
    await page.waitForTimeout(500);
    await page.reload();
    await page.waitForSelector('[data-testid="delivered"]');
  }
  step('replay one dead letter, then all');

  await page.click('button:text("Send a test message")');
  await page.waitForSelector('.notice >> text=Test message delivered');
  step('send a test message');

  await page.click('main .actions button:text("Pause")');
  await page.waitForSelector('[data-testid="destination-state"]:text("paused")');
  await page.waitForSelector('main .actions button:text("Resume")');
  step('pause a destination');
});
