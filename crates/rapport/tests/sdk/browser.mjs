// Segment's browser SDK (analytics.js 2.0, @segment/analytics-next, its UMD build from
// node_modules) in headless Chromium, on a page served from another origin than Rapport's,
// configured as a site would: the write key and `cdnURL` pointing at Rapport, which serves
// the settings document that sends the events back to it. Prints a JSON report:
// {"calls": [what each call resolved to], "sent": [each message as it went on the wire, with
// the path it went to], "responses": [{url, status}], "foreign": [urls], "errors": [..]}.
//
// usage: node browser.mjs <rapport url> <write key>
// CHROMIUM names the browser binary (default /usr/bin/chromium); none is downloaded.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const [rapport, writeKey] = process.argv.slice(2);
const sdkDir = dirname(require.resolve('@segment/analytics-next/package.json'));
const sdk = readFileSync(join(sdkDir, 'dist/umd/index.js'));

// The site: one page and the SDK file, on its own loopback port (so another origin).
const site = createServer((req, res) => {
  if (req.url === '/analytics.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(sdk);
  } else {
    res
      .writeHead(200, { 'content-type': 'text/html' })
      .end('<!doctype html><title>shop</title><script src="/analytics.js"></script>');
  }
});
await new Promise((ok) => site.listen(0, '127.0.0.1', ok));
const siteOrigin = `http://127.0.0.1:${site.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const report = { site: siteOrigin, calls: [], sent: [], responses: [], foreign: [], errors: [] };
try {
  // Two page loads: each call sent on its own (/v1/t, /v1/i, …), then batched (/v1/b).
  for (const batching of [false, true]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(siteOrigin) && !u.startsWith(rapport)) report.foreign.push(u);
      if (u.startsWith(rapport) && r.method() === 'POST') {
        const path = new URL(u).pathname;
        const body = JSON.parse(r.postData());
        for (const m of path === '/v1/b' ? body.batch : [body]) {
          report.sent.push({ path, contentType: r.headers()['content-type'], message: m });
        }
      }
    });
    page.on('response', (r) => {
      if (r.url().startsWith(rapport)) report.responses.push({ url: r.url(), status: r.status() });
    });
    page.on('requestfailed', (r) => report.errors.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on('pageerror', (e) => report.errors.push(String(e)));
    page.on('console', (m) => m.type() === 'error' && report.errors.push(m.text()));
    await page.goto(siteOrigin + '/');
    const batchDone = batching
      ? page.waitForResponse((r) => r.url().endsWith('/v1/b'), { timeout: 20000 })
      : null;
    const sent = await page.evaluate(
      async ({ writeKey, rapport, batching }) => {
        const integrations = batching
          ? { 'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 6, timeout: 300 } } } }
          : undefined;
        const [analytics] = await window.AnalyticsNext.AnalyticsBrowser.load(
          { writeKey, cdnURL: rapport },
          { integrations },
        );
        const tag = batching ? 'batched' : 'single';
        const calls = [
          analytics.identify(`browser-${tag}`, { email: `${tag}@example.com`, plan: 'pro' }),
          analytics.track('Order Completed', { revenue: 19.99, products: [{ sku: 'A-1' }] }),
          analytics.page('Docs', 'Pricing', { variant: tag }),
          analytics.screen('App', 'Home', { tab: 1 }),
          analytics.group(`org-${tag}`, { name: 'Acme', employees: 40 }),
          analytics.alias(`browser-${tag}-new`, `browser-${tag}`),
        ];
        const contexts = await Promise.all(calls);
        return contexts.map((ctx) => {
          const failed = ctx.failedDelivery();
          return {
            type: ctx.event.type,
            messageId: ctx.event.messageId,
            failed: failed ? String(failed.reason) : null,
          };
        });
      },
      { writeKey, rapport, batching },
    );
    if (batchDone) await batchDone;
    report.calls.push(...sent);
    await context.close();
  }
} finally {
  await browser.close();
  site.close();
}
process.stdout.write(JSON.stringify(report));
