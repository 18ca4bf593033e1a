// Times every dashboard page in headless Chromium (rapport-bench dashboard runs this on a
// server holding many events; docs/benchmarks.md). Each page is opened `rounds` times, each
// time after an idle page, and timed from the change of address until the page's `main` is
// a new one (`data-generation`) no longer busy loading (`aria-busy="false"`): its API calls
// answered and drawn, the page usable; and until no section inside is still busy (the
// Value page's reports fill in after): complete. Prints one line of JSON:
// {"pages": [{"page", "hash", "median_ms", "max_ms", "rounds_ms": [...], "complete_median_ms",
//   "slowest_calls": [{"path", "ms"}] (of the last round), "error"?}]}.
//
// usage: node dashboard-bench.mjs <rapport url> <admin key> <profile reference> <rounds>
import { harness } from './dashboard-harness.mjs';

const [rapport, adminKey, profile, roundsText] = process.argv.slice(2);
const rounds = Number(roundsText) || 5;
const { page, report, signIn, finish } = await harness(rapport);

const PAGES = [
  ['overview', '#/'],
  ['live events', '#/events'],
  ['live events, one user', '#/events?userId=user-42'],
  ['profiles', '#/profiles'],
  ['profile 360', `#/profiles/${encodeURIComponent(profile)}`],
  ['segments', '#/segments'],
  ['segment', '#/segments/buyers'],
  ['computed traits', '#/traits'],
  ['computed trait', '#/traits/spend'],
  ['journeys', '#/journeys'],
  ['journey', '#/journeys/winback'],
  ['destinations', '#/destinations'],
  ['destination', '#/destinations/crm'],
  ['value', '#/value'],
  ['identity', '#/identity'],
  ['privacy', '#/privacy'],
  ['audit trail', '#/audit'],
  ['settings', '#/settings'],
];

async function open(hash) {
  const before = Number(await page.getAttribute('main', 'data-generation'));
  const started = Date.now();
  await page.evaluate((h) => {
    location.hash = h;
  }, hash);
  await page.waitForFunction(
    (b) => {
      const m = document.querySelector('main');
      return m && Number(m.dataset.generation) > b && m.getAttribute('aria-busy') === 'false';
    },
    before,
    { polling: 5, timeout: 60000 },
  );
  const usable = Date.now() - started;
  // Sections that fill in after the page is drawn (the Value page's reports).
  await page.waitForFunction(() => !document.querySelector('main [aria-busy="true"]'), null, { polling: 5, timeout: 120000 });
  return [usable, Date.now() - started];
}

await finish(async () => {
  await signIn(adminKey);
  report.pages = [];
  for (const [name, hash] of PAGES) {
    const times = [];
    const complete = [];
    for (let i = 0; i < rounds; i += 1) {
      await open('#/bench-idle');
      await page.evaluate(() => performance.clearResourceTimings());
      const [usable, done] = await open(hash);
      times.push(usable);
      complete.push(done);
    }
    // Where the last round's time went: its slowest API calls.
    const slowest = await page.evaluate(() =>
      performance
        .getEntriesByType('resource')
        .filter((e) => e.name.includes('/api/'))
        .sort((a, b) => b.duration - a.duration)
        .slice(0, 3)
        .map((e) => ({ path: new URL(e.name).pathname + new URL(e.name).search, ms: Math.round(e.duration) })),
    );
    const error = await page.$('main .error[role=alert]');
    const sorted = [...times].sort((a, b) => a - b);
    const completeSorted = [...complete].sort((a, b) => a - b);
    report.pages.push({
      page: name,
      hash,
      median_ms: sorted[Math.floor(sorted.length / 2)],
      max_ms: sorted[sorted.length - 1],
      rounds_ms: times,
      complete_median_ms: completeSorted[Math.floor(completeSorted.length / 2)],
      slowest_calls: slowest,
      ...(error ? { error: (await error.textContent()).trim() } : {}),
    });
  }
});
