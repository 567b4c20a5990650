// Shared helpers of the centrifuge-js conformance tests.
//
// Environment (set by conformance/run.sh; defaults fit a Herald started by hand with
// conformance/herald.toml from the repository root):
//   CONFORMANCE_HTTP     base URL of Herald            (http://127.0.0.1:18000)
//   CONFORMANCE_API_KEY  server API key                (conformance-api-key)
//   CONFORMANCE_SECRET   HMAC secret of client tokens  (conformance-secret-key)
//   CONFORMANCE_BIN      herald binary                 (<repo>/target/debug/herald)
//   CONFORMANCE_CONFIG   herald config file            (<repo>/conformance/herald.toml)
//   CONFORMANCE_DEBUG=1  turn on centrifuge-js debug logging

import { execFile } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import WebSocket from 'ws';
import { EventSource } from 'eventsource';
import { Centrifuge as JsonCentrifuge } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';

const execFileAsync = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export const HTTP = (process.env.CONFORMANCE_HTTP || 'http://127.0.0.1:18000').replace(/\/$/, '');
export const WS_URL = HTTP.replace(/^http/, 'ws') + '/connection/websocket';
export const API_KEY = process.env.CONFORMANCE_API_KEY || 'conformance-api-key';
export const SECRET = process.env.CONFORMANCE_SECRET || 'conformance-secret-key';
export const HERALD_BIN = process.env.CONFORMANCE_BIN || resolve(repoRoot, 'target/debug/herald');
export const HERALD_CONFIG = process.env.CONFORMANCE_CONFIG || resolve(repoRoot, 'conformance/herald.toml');
const DEBUG = process.env.CONFORMANCE_DEBUG === '1';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The two wire formats of centrifuge-js: JSON (default entry) and protobuf (build/protobuf entry). */
export const CODECS = [
  {
    name: 'json',
    Centrifuge: JsonCentrifuge,
    // What the app passes to publish(), and how it reads publication data.
    encode: (value) => value,
    decode: (data) => data,
  },
  {
    name: 'protobuf',
    Centrifuge: ProtobufCentrifuge,
    encode: (value) => encoder.encode(JSON.stringify(value)),
    decode: (data) => {
      if (!(data instanceof Uint8Array)) {
        throw new Error(`protobuf client expected Uint8Array data, got ${typeof data}: ${JSON.stringify(data)}`);
      }
      return JSON.parse(decoder.decode(data));
    },
  },
];

export function uid() {
  return randomUUID().replace(/-/g, '').slice(0, 12);
}

// ---------------------------------------------------------------------------------------
// Tokens

/** Mints a token with `herald token` (connection token, or subscription token with channel). */
export async function heraldToken({ user, channels, ttl, channel, info } = {}) {
  const args = ['token', '--config', HERALD_CONFIG, '--user', user];
  if (info !== undefined) args.push('--info', JSON.stringify(info));
  if (channels && channels.length) args.push('--channels', channels.join(','));
  if (ttl) args.push('--ttl', ttl);
  if (channel) args.push('--channel', channel);
  return heraldCommandToken(args);
}

/** Runs `herald <args>` and returns the JWT it prints; fails with its output otherwise. */
export async function heraldCommandToken(args) {
  let out;
  try {
    out = await execFileAsync(HERALD_BIN, args, { timeout: 10000 });
  } catch (e) {
    throw new Error(`herald ${args.join(' ')} failed: ${e.message}\nstdout: ${e.stdout}\nstderr: ${e.stderr}`);
  }
  const token = out.stdout.trim();
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) {
    throw new Error(`herald ${args.join(' ')} printed no JWT: ${JSON.stringify(out.stdout)} (stderr ${JSON.stringify(out.stderr)})`);
  }
  return token;
}

function b64url(input) {
  return Buffer.from(input).toString('base64url');
}

/** Mints an HS256 JWT here (used for tokens herald must reject: wrong secret, already expired). */
export function signJwt(claims, secret = SECRET) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

// ---------------------------------------------------------------------------------------
// Server API

/** POST /api/<method>; returns the parsed body ({result} or {error}). */
export async function apiRaw(method, params, { key = API_KEY } = {}) {
  const res = await fetch(`${HTTP}/api/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': key },
    body: JSON.stringify(params),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`/api/${method} answered HTTP ${res.status} with non-JSON body: ${text.slice(0, 300)}`);
  }
  return { status: res.status, body };
}

/** POST /api/<method>; returns `result`, throws on an error reply. */
export async function api(method, params) {
  const { status, body } = await apiRaw(method, params);
  if (status !== 200 || body.error) {
    throw new Error(`/api/${method} ${JSON.stringify(params)} -> HTTP ${status} ${JSON.stringify(body)}`);
  }
  return body.result ?? {};
}

export async function publish(channel, data, extra = {}) {
  return api('publish', { channel, data, ...extra });
}

// ---------------------------------------------------------------------------------------
// Frame recording: a WebSocket subclass that records what goes out and comes in, so a
// failing test can show the exchange.

function describeFrame(data) {
  if (typeof data === 'string') return data;
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data)
    : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.isBuffer(data) ? data : null;
  if (!bytes) return String(data);
  const hex = Buffer.from(bytes).toString('hex');
  const printable = Buffer.from(bytes).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
  return `<${bytes.length} bytes> ${hex.slice(0, 400)}${hex.length > 400 ? '…' : ''} | ${printable.slice(0, 200)}`;
}

export class FrameLog {
  constructor() {
    this.frames = [];
  }

  push(dir, data) {
    this.frames.push(`${new Date().toISOString().slice(11, 23)} ${dir} ${describeFrame(data)}`);
  }

  /** A WebSocket class for the `websocket` option of Centrifuge that records into this log. */
  websocketClass() {
    const log = this;
    return class RecordingWebSocket extends WebSocket {
      constructor(url, protocols) {
        super(url, protocols);
        log.push('**', `open ${url} subprotocol=${JSON.stringify(protocols ?? null)}`);
        this.addEventListener('message', (ev) => log.push('<-', ev.data));
        this.addEventListener('close', (ev) => log.push('**', `close code=${ev.code} reason=${JSON.stringify(ev.reason)}`));
        this.addEventListener('error', (ev) => log.push('**', `error ${ev.message ?? ''}`));
      }

      send(data, ...rest) {
        log.push('->', data);
        return super.send(data, ...rest);
      }
    };
  }

  dump(limit = 60) {
    const shown = this.frames.slice(-limit);
    return shown.join('\n');
  }
}

// ---------------------------------------------------------------------------------------
// Clients

/**
 * A test context: creates clients that record their frames and are all disconnected at
 * the end; on failure the recorded frames are attached to the error.
 */
export class Session {
  constructor(codec) {
    this.codec = codec;
    this.clients = [];
    this.logs = [];
  }

  client(options = {}) {
    const log = new FrameLog();
    this.logs.push(log);
    const c = new this.codec.Centrifuge(WS_URL, {
      websocket: log.websocketClass(),
      debug: DEBUG,
      timeout: 5000,
      ...options,
    });
    c.frameLog = log;
    this.clients.push(c);
    return c;
  }

  /**
   * A client over one HTTP transport ('http_stream' or 'sse'), with bidirectional emulation
   * through /emulation, as centrifuge-js runs in a browser without WebSocket.
   */
  httpClient(transport, options = {}) {
    const c = new this.codec.Centrifuge([{ transport, endpoint: `${HTTP}/connection/${transport}` }], {
      fetch: globalThis.fetch,
      readableStream: globalThis.ReadableStream,
      eventsource: EventSource,
      emulationEndpoint: `${HTTP}/emulation`,
      debug: DEBUG,
      timeout: 5000,
      ...options,
    });
    c.frameLog = new FrameLog();
    this.clients.push(c);
    return c;
  }

  close() {
    for (const c of this.clients) {
      try {
        c.disconnect();
      } catch {
        // ignore
      }
    }
  }

  framesReport() {
    return this.logs.map((l, i) => `--- client #${i + 1} frames ---\n${l.dump()}`).join('\n');
  }
}

/** Runs fn(session) and always disconnects its clients; failures carry the frames exchanged. */
export async function withSession(codec, fn) {
  const session = new Session(codec);
  try {
    return await fn(session);
  } catch (e) {
    const report = session.framesReport();
    if (e && typeof e === 'object') {
      e.message = `${e.message}\n${report}`;
    }
    throw e;
  } finally {
    session.close();
  }
}

// ---------------------------------------------------------------------------------------
// Waiting

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves with the first `event` of `emitter` that satisfies `predicate`, or rejects after ms. */
export function waitEvent(emitter, event, { timeout = 5000, predicate = () => true, what } = {}) {
  return new Promise((resolve, reject) => {
    const onEvent = (ctx) => {
      let ok;
      try {
        ok = predicate(ctx);
      } catch (e) {
        cleanup();
        reject(e);
        return;
      }
      if (ok) {
        cleanup();
        resolve(ctx);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timeout (${timeout} ms) waiting for '${event}'${what ? ` (${what})` : ''}`));
    }, timeout);
    const cleanup = () => {
      clearTimeout(timer);
      emitter.off(event, onEvent);
    };
    emitter.on(event, onEvent);
  });
}

/** Records every event of the given names (with a timestamp) on an emitter. */
export function record(emitter, events) {
  const rec = { all: [], by: {} };
  for (const name of events) {
    rec.by[name] = [];
    emitter.on(name, (ctx) => {
      rec.all.push({ name, ctx, at: Date.now() });
      rec.by[name].push(ctx);
    });
  }
  return rec;
}

/** A queue of events of one kind: next() resolves with the next one, or rejects after timeout. */
export class EventQueue {
  constructor(emitter, event, map = (x) => x) {
    this.items = [];
    this.waiters = [];
    this.event = event;
    emitter.on(event, (ctx) => {
      const item = map(ctx);
      const w = this.waiters.shift();
      if (w) w.resolve(item);
      else this.items.push(item);
    });
  }

  next(timeout = 5000) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve, reject) => {
      const w = { resolve: (v) => { clearTimeout(timer); resolve(v); } };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`timeout (${timeout} ms) waiting for '${this.event}'`));
      }, timeout);
      this.waiters.push(w);
    });
  }

  async take(n, timeout = 5000) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await this.next(timeout));
    return out;
  }
}

/**
 * Resolves with the first `okEvent` of `emitter`, rejects on the first `failEvent` or after
 * the timeout; listeners are removed either way.
 */
export function raceEvents(emitter, okEvent, failEvent, { timeout = 5000, what = okEvent } = {}) {
  return new Promise((resolve, reject) => {
    const onOk = (ctx) => {
      cleanup();
      resolve(ctx);
    };
    const onFail = (ctx) => {
      cleanup();
      reject(new Error(`${what}: got '${failEvent}' ${JSON.stringify(ctx)} instead of '${okEvent}'`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what}: timeout (${timeout} ms) waiting for '${okEvent}'`));
    }, timeout);
    const cleanup = () => {
      clearTimeout(timer);
      emitter.off(okEvent, onOk);
      emitter.off(failEvent, onFail);
    };
    emitter.on(okEvent, onOk);
    emitter.on(failEvent, onFail);
  });
}

/** Connects a client and resolves with the 'connected' context. */
export async function connect(client, timeout = 5000) {
  const p = raceEvents(client, 'connected', 'disconnected', { timeout, what: 'connect' });
  client.connect();
  return p;
}

/** Subscribes and resolves with the 'subscribed' context (rejects on 'unsubscribed'). */
export async function subscribe(sub, timeout = 5000) {
  const p = raceEvents(sub, 'subscribed', 'unsubscribed', { timeout, what: `subscribe ${sub.channel}` });
  sub.subscribe();
  return p;
}

export { EventEmitter };
