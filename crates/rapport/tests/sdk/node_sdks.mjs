// Drives an official Node SDK against a Rapport server, with only its host changed, and
// prints the messages it was asked to send as JSON ({"sent": [...]}) for the Rust test to
// check against what Rapport stored.
//
// usage: node node_sdks.mjs rudderstack|segment <rapport url> <write key>
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [sdk, url, writeKey] = process.argv.slice(2);
const run = randomUUID().slice(0, 8);

// Every call type, with the fields each carries; messageIds are the caller's, as an
// application would pass them, so the test can find each message again.
function messages(prefix) {
  const user = `${prefix}-user-${run}`;
  const anon = `${prefix}-anon-${run}`;
  const id = () => randomUUID();
  return [
    ['identify', { messageId: id(), userId: user, traits: { email: `${prefix}@example.com`, plan: 'pro', n: 2 } }],
    ['track', { messageId: id(), userId: user, event: 'Order Completed', properties: { revenue: 19.99, currency: 'EUR', products: [{ sku: 'A-1', qty: 2 }] } }],
    ['track', { messageId: id(), anonymousId: anon, event: 'Signed Up', properties: { caf: 'café ☕' }, context: { ip: '203.0.113.9' } }],
    ['page', { messageId: id(), userId: user, category: 'Docs', name: 'Pricing', properties: { path: '/pricing' } }],
    ['screen', { messageId: id(), userId: user, name: 'Home', properties: { variant: 'b' } }],
    ['group', { messageId: id(), userId: user, groupId: `${prefix}-org-${run}`, traits: { name: 'Acme', employees: 40 } }],
    ['alias', { messageId: id(), userId: user, previousId: anon }],
  ];
}

async function rudderstack() {
  const Analytics = require('@rudderstack/rudder-sdk-node');
  // Default settings (gzip on, its own content type): only the data plane URL changes.
  const client = new Analytics(writeKey, { dataPlaneUrl: url, logLevel: 'error' });
  // Observe (never change) the request heads as they went out, to show what was tested.
  const heads = [];
  client.axiosInstance.interceptors.response.use((res) => {
    heads.push(res.request._header);
    return res;
  });
  const sent = messages('rs');
  const failures = [];
  for (const [type, msg] of sent) {
    client[type](msg, (err) => err && failures.push(String(err)));
  }
  await client.flush();
  return { sent: sent.map(([type, msg]) => ({ type, ...msg })), failures, heads };
}

async function segment() {
  const { Analytics } = require('@segment/analytics-node');
  const client = new Analytics({ writeKey, host: url, maxRetries: 0 });
  const failures = [];
  client.on('error', (err) => failures.push(String(err?.reason ?? err?.code ?? err)));
  const sent = messages('sg');
  for (const [type, msg] of sent) {
    client[type](msg);
  }
  await client.closeAndFlush({ timeout: 20000 });
  return { sent: sent.map(([type, msg]) => ({ type, ...msg })), failures };
}

const report = await ({ rudderstack, segment })[sdk]();
process.stdout.write(JSON.stringify(report));
process.exit(report.failures.length ? 1 : 0);
