// What every browser test of the dashboard shares: Debian's Chromium started headless (none
// is downloaded), the watchers that record script errors, requests to other hosts and an
// alert from injected markup, axe-core's checks with a screenshot of each page, and the
// sign-in. A test script makes a harness, runs its flows between `step`s, and ends with
// `finish`, which prints the report as one line of JSON:
// {"steps": [names of the steps passed], "violations": [{page, id, impact, help, nodes}],
//  "errors": [...], "foreign": [urls], "xss": bool, "screenshots": [paths], ...extra}.
//
// SCREENSHOTS names a directory to write a PNG of each page into (docs/dashboard.md).
// CHROMIUM names the browser binary (default /usr/bin/chromium).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** Starts the browser on a page watched for errors; `rapport` is the server's base URL. */
export async function harness(rapport) {
  const shots = process.env.SCREENSHOTS;
  const report = { steps: [], violations: [], errors: [], foreign: [], xss: false, screenshots: [] };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.on('request', (r) => {
    if (!r.url().startsWith(rapport) && !r.url().startsWith('data:')) report.foreign.push(r.url());
  });
  page.on('pageerror', (e) => report.errors.push(String(e)));
  page.on('dialog', async (d) => {
    // The dashboard's only dialogs are confirmations before a destructive change; an alert
    // would be injected markup's script running.
    if (d.type() === 'alert') report.xss = true;
    await d.accept();
  });
  page.on('console', (m) => {
    // Chromium logs every 4xx answer as an error; those are the API's refusals the flows
    // provoke (a wrong key, an invalid expression, a forged change), shown on the page.
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) {
      report.errors.push(m.text());
    }
  });

  return {
    page,
    context,
    report,
    /** Records a flow as passed. */
    step: (name) => report.steps.push(name),
    /** Runs axe on the page as it stands, recording serious and critical violations, and
     * keeps a screenshot named `name`. */
    async check(name) {
      await page.waitForLoadState('networkidle');
      // Evaluated through the DevTools protocol: the page's CSP (rightly) refuses injected
      // script tags.
      if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(axeSource);
      const result = await page.evaluate(async () =>
        window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }),
      );
      for (const v of result.violations) {
        if (v.impact === 'serious' || v.impact === 'critical') {
          report.violations.push({
            page: name,
            id: v.id,
            impact: v.impact,
            help: v.help,
            nodes: v.nodes.slice(0, 3).map((n) => n.html),
          });
        }
      }
      if (shots) {
        const path = join(shots, `${name}.png`);
        await page.screenshot({ path, fullPage: true });
        report.screenshots.push(path);
      }
    },
    /** Opens `#/…` and waits for `ready` (a selector) to show. */
    async visit(hash, ready) {
      await page.goto(`${rapport}/${hash}`);
      await page.waitForSelector(ready, { timeout: 15000 });
    },
    /** Signs in with `key` and waits for the navigation. */
    async signIn(key) {
      await page.goto(`${rapport}/`);
      await page.waitForSelector('#key');
      await page.fill('#key', key);
      await page.click('button[type=submit]');
      await page.waitForSelector('nav[aria-label=Sections]');
    },
    /** Runs `flows`, records a failure with the steps passed before it, closes the browser
     * and prints the report. */
    async finish(flows) {
      try {
        await flows();
      } catch (e) {
        report.errors.push(`failed after steps ${JSON.stringify(report.steps)}: ${e.message}`);
        if (shots) await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
      } finally {
        await browser.close();
      }
      console.log(JSON.stringify(report));
    },
  };
}
