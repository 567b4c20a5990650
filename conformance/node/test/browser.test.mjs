// A real browser (Debian's Chromium, headless, driven by playwright-core) subscribes with a
// plain EventSource to /connection/uni_sse from a page on another origin: Herald must allow the
// listed origin (client.allowed_origins), deliver publications, and when the stream is killed
// the browser's own reconnect (Last-Event-ID) must resume without a gap. A page from an origin
// that is not listed must be refused.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';

import { HTTP, api, heraldToken, publish, sleep, uid } from '../lib/harness.mjs';

const CHROMIUM = '/usr/bin/chromium';
const PAGE_PORT = Number(process.env.CONFORMANCE_PAGE_PORT || 18002);

// The page: an EventSource on the URL in ?src=, recording publication numbers (live, and those
// recovered inside the connect push after a reconnect).
const PAGE = `<!doctype html>
<html><body><script>
window.received = [];
window.opens = 0;
window.errors = 0;
const es = new EventSource(new URLSearchParams(location.search).get('src'));
window.es = es;
es.onopen = () => { window.opens += 1; };
es.onerror = () => { window.errors += 1; };
es.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.connect) {
    for (const sub of Object.values(message.connect.subs || {})) {
      for (const pub of sub.publications || []) window.received.push(pub.data.n);
    }
  } else if (message.pub) {
    window.received.push(message.pub.data.n);
  }
};
</script></body></html>`;

function servePage(host) {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  return new Promise((resolve) => server.listen(PAGE_PORT, host, () => resolve(server)));
}

async function until(page, predicate, arg, what, timeout = 10000) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 50 });
  } catch (e) {
    const state = await page.evaluate(() => ({ received: window.received, opens: window.opens, errors: window.errors }));
    throw new Error(`${what}: ${e.message}; page state ${JSON.stringify(state)}`);
  }
}

const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (conformance/run.sh installs it as root)`;
if (skip) console.error(`!!! WARNING: browser test SKIPPED: ${skip} !!!`);

describe('browser: EventSource on /connection/uni_sse', { skip }, () => {
  let browser;
  const servers = [];

  before(async () => {
    const { chromium } = await import('playwright-core');
    // No background networking: this machine's network is closed, and Chromium would keep
    // trying to reach Google's hosts.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
    // The listed origin, and one Herald does not know.
    servers.push(await servePage('127.0.0.1'), await servePage('127.0.0.2'));
  });

  after(async () => {
    await browser?.close();
    for (const s of servers) s.close();
  });

  test('receives publications and resumes without a gap after the stream is killed', { timeout: 40000 }, async () => {
    const user = `u-${uid()}`;
    const channel = `live:browser-${uid()}`;
    const token = await heraldToken({ user, channels: [channel] });
    const src = `${HTTP}/connection/uni_sse?cf_connect=${encodeURIComponent(JSON.stringify({ token }))}`;
    const page = await browser.newPage();
    try {
      await page.goto(`http://127.0.0.1:${PAGE_PORT}/?src=${encodeURIComponent(src)}`);
      await until(page, () => window.opens === 1, undefined, 'the stream opens');
      await sleep(200);
      await publish(channel, { n: 1 });
      await publish(channel, { n: 2 });
      await until(page, () => window.received.length === 2, undefined, 'two live publications');

      // Kill the stream from the server; publish while the browser is away.
      await api('disconnect', { user, disconnect: { code: 4000, reason: 'kill the stream' } });
      await until(page, () => window.errors >= 1, undefined, 'the browser sees the stream end');
      await publish(channel, { n: 3 });
      await publish(channel, { n: 4 });
      // EventSource reconnects by itself (a few seconds) with Last-Event-ID.
      await until(page, () => window.opens === 2, undefined, 'the browser reconnects', 15000);
      await publish(channel, { n: 5 });
      await until(page, () => window.received.length >= 5, undefined, 'missed and new publications');
      await sleep(300);
      const received = await page.evaluate(() => window.received);
      assert.deepEqual(received, [1, 2, 3, 4, 5], 'every publication once, in order');
    } finally {
      await page.close();
    }
  });

  test('a page from an origin that is not allowed cannot open the stream', { timeout: 20000 }, async () => {
    const token = await heraldToken({ user: `u-${uid()}`, channels: [`live:browser-${uid()}`] });
    const src = `${HTTP}/connection/uni_sse?cf_connect=${encodeURIComponent(JSON.stringify({ token }))}`;
    const page = await browser.newPage();
    try {
      await page.goto(`http://127.0.0.2:${PAGE_PORT}/?src=${encodeURIComponent(src)}`);
      // A CORS failure closes the EventSource for good (readyState 2) without an open.
      await until(page, () => window.es.readyState === 2, undefined, 'the stream is refused');
      assert.equal(await page.evaluate(() => window.opens), 0);
    } finally {
      await page.close();
    }
  });
});
