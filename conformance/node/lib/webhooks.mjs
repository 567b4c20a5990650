// Shared helpers of the Svix SDK (webhook) conformance tests.
//
// Environment (set by conformance/run.sh; defaults fit a Herald started by hand with
// conformance/herald.toml from the repository root):
//   CONFORMANCE_HTTP               base URL of Herald                       (http://127.0.0.1:18000)
//   CONFORMANCE_HTTP_SVIX_HEADERS  a second Herald with webhooks.header_style = "svix"
//                                  (tests that need it are skipped when it is not set)
//   CONFORMANCE_MANAGEMENT_SECRET  management.jwt_secret     (conformance-management-jwt-secret)
//   CONFORMANCE_BIN / CONFORMANCE_CONFIG  as in harness.mjs (for `herald token --svix`)

import { createServer } from 'node:http';

import { Webhook as StandardWebhook } from 'standardwebhooks';
import { ApiException, Svix, Webhook as SvixWebhook } from 'svix';

import { HERALD_CONFIG, HTTP, heraldCommandToken, sleep } from './harness.mjs';

export { ApiException, Svix, SvixWebhook, StandardWebhook };

/** management.jwt_secret of conformance/herald.toml (to mint expired tokens here). */
export const MANAGEMENT_SECRET = process.env.CONFORMANCE_MANAGEMENT_SECRET || 'conformance-management-jwt-secret';

export const SVIX_HEADERS_HTTP = process.env.CONFORMANCE_HTTP_SVIX_HEADERS
  ? process.env.CONFORMANCE_HTTP_SVIX_HEADERS.replace(/\/$/, '')
  : null;

// ---------------------------------------------------------------------------------------
// The management API client

let tokenPromise;

/** The management API bearer token, minted once with `herald token --svix`. */
export function svixToken() {
  tokenPromise ??= heraldCommandToken(['token', '--svix', '--config', HERALD_CONFIG]);
  return tokenPromise;
}

/** The official Svix SDK pointed at Herald (or at `serverUrl`). */
export async function svixClient({ serverUrl = HTTP, token } = {}) {
  return new Svix(token ?? (await svixToken()), { serverUrl, requestTimeout: 10000 });
}

/**
 * Runs `fn` and returns the ApiException it throws; fails if it resolves or throws anything
 * else.
 */
export async function apiError(fn, what = 'call') {
  let result;
  try {
    result = await fn();
  } catch (e) {
    if (e instanceof ApiException) return e;
    throw new Error(`${what}: expected an ApiException, got ${e?.stack ?? e}`);
  }
  throw new Error(`${what}: expected an ApiException, got a result: ${JSON.stringify(result)}`);
}

// ---------------------------------------------------------------------------------------
// Waiting

/** Polls `fn` until it returns a truthy value; returns it, or throws after `timeout` ms. */
export async function until(fn, { timeout = 10000, interval = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`timeout (${timeout} ms) waiting for ${what}`);
    }
    await sleep(interval);
  }
}

/** Every page of a Svix list call: `page(iterator)` returns `{data, iterator, done}`. */
export async function allPages(page, { max = 100 } = {}) {
  const items = [];
  let iterator;
  for (let i = 0; i < max; i++) {
    const out = await page(iterator);
    items.push(...out.data);
    if (out.done) return items;
    if (!out.iterator) throw new Error(`page ${i} is not done but has no iterator: ${JSON.stringify(out)}`);
    iterator = out.iterator;
  }
  throw new Error(`more than ${max} pages`);
}

// ---------------------------------------------------------------------------------------
// The webhook receiver

/**
 * A local HTTP server that records every request (path, headers, raw body) and answers with
 * the statuses scripted for its path (`script(path, [500, 500])`: the first two requests get
 * 500, later ones 200).
 */
export class Receiver {
  constructor() {
    this.requests = [];
    this.scripts = new Map();
    this.waiters = [];
    this.server = createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const path = req.url;
        const queue = this.scripts.get(path);
        const status = queue && queue.length ? queue.shift() : 200;
        const record = {
          path,
          method: req.method,
          headers: { ...req.headers },
          body: Buffer.concat(chunks).toString('utf8'),
          status,
          at: Date.now(),
        };
        this.requests.push(record);
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(status === 200 ? 'ok' : `scripted ${status}`);
        this.waiters = this.waiters.filter((w) => !w());
      });
    });
  }

  async start() {
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', resolve);
    });
    this.port = this.server.address().port;
    return this;
  }

  url(path) {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** The next requests to `path` are answered with `statuses`, in order, then 200. */
  script(path, statuses) {
    this.scripts.set(path, [...statuses]);
  }

  on(path) {
    return this.requests.filter((r) => r.path === path);
  }

  /** Resolves with the requests to `path` once there are at least `n`. */
  wait(path, n = 1, timeout = 10000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const got = this.on(path);
        if (got.length >= n) {
          clearTimeout(timer);
          resolve(got);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        const got = this.on(path);
        reject(new Error(`timeout (${timeout} ms) waiting for ${n} webhook(s) on ${path}; got ${got.length}: `
          + JSON.stringify(got.map((r) => ({ status: r.status, headers: r.headers, body: r.body })))));
      }, timeout);
      if (!check()) this.waiters.push(check);
    });
  }

  async close() {
    this.server.closeAllConnections?.();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

export async function startReceiver() {
  return new Receiver().start();
}

/**
 * Verifies a received webhook with both libraries (`standardwebhooks` needs `webhook-*`
 * headers; the svix SDK's verifier takes `svix-*` or `webhook-*`). Returns the parsed body.
 */
export function verifyBoth(secret, request) {
  const std = new StandardWebhook(secret).verify(request.body, request.headers);
  new SvixWebhook(secret).verify(request.body, request.headers);
  return std;
}

/** Throws unless verification with `secret` fails in both libraries. */
export function assertRejectedByBoth(secret, request) {
  for (const [name, make] of [['standardwebhooks', () => new StandardWebhook(secret)], ['svix', () => new SvixWebhook(secret)]]) {
    let verified = false;
    try {
      make().verify(request.body, request.headers);
      verified = true;
    } catch {
      // expected
    }
    if (verified) throw new Error(`${name} verified a webhook with a secret that should not match`);
  }
}
