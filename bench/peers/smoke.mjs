// Smoke test for the benchmark peers, driven by peers.json exactly as the runner is:
// start the peer, wait for `ready`, connect 2 subscribers, publish 3 messages,
// check both subscribers got all 3 bodies verbatim and in order, stop the peer.
//
//   node bench/peers/smoke.mjs [peer ...]     (default: every installed peer)
//   SMOKE_PORT=21000 picks the first port tried (ports stay below 32768).
import { spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const manifest = JSON.parse(fs.readFileSync(path.join(HERE, 'peers.json'), 'utf8'));

// The `ws` client comes from whichever installed Node peer has it.
function loadWs() {
  for (const dir of ['ws-node', 'socketio', 'soketi']) {
    const base = path.join(HERE, 'installed', dir, 'node_modules', 'ws', 'package.json');
    if (fs.existsSync(base)) return createRequire(base)('ws');
  }
  throw new Error('smoke needs the `ws` npm package: run bench/peers/install.sh ws-node');
}
const WebSocket = loadWs();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fill = (tpl, vars) => tpl.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer().once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}
let nextPort = Number(process.env.SMOKE_PORT || 21000);
async function pickPort() {
  while (nextPort < 32000) {
    const p = nextPort; nextPort += 2;
    if ((await portFree(p)) && (await portFree(p + 1))) return p;
  }
  throw new Error('no free port pair below 32000');
}

async function waitReady(url, child, ms = 60000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`peer exited with code ${child.exitCode} before ready`);
    try { if ((await fetch(url)).status === 200) return; } catch { /* not up yet */ }
    await sleep(100);
  }
  throw new Error(`not ready after ${ms} ms: ${url}`);
}

// --------------------------------------------------------------- subscribers per kind
// Each returns { ready: Promise (subscription in effect), got: [bodies], close() }.
function subscriber(peer, port, channel) {
  const ws = new WebSocket(fill(peer.ws_url, { port, channel }));
  const got = [];
  let resolveReady, rejectReady;
  const ready = new Promise((res, rej) => { resolveReady = res; rejectReady = rej; });
  ws.on('error', (e) => rejectReady(e));
  ws.on('close', (code) => rejectReady(new Error(`closed (${code}) before subscribed`)));
  // Every kind delivers text frames; a binary one shows up as a mismatch.
  const text = (data, isBinary) => (isBinary ? `<binary frame> ${data.toString('utf8')}` : data.toString('utf8'));
  if (peer.kind === 'raw-ws' || peer.kind === 'nchan') {
    ws.on('open', () => resolveReady());
    ws.on('message', (d, b) => got.push(text(d, b)));
  } else if (peer.kind === 'socketio') {
    ws.on('message', (d, b) => {
      const m = text(d, b);
      if (m.startsWith('0{')) ws.send('40');                                  // Engine.IO open -> connect
      else if (m.startsWith('40')) ws.send(`421${JSON.stringify(['subscribe', channel])}`); // with ack id 1
      else if (m.startsWith('431')) resolveReady();                           // ack of subscribe
      else if (m === '2') ws.send('3');                                       // ping -> pong
      else if (m.startsWith('42[')) {
        const [event, body] = JSON.parse(m.slice(2));
        if (event === 'message') got.push(typeof body === 'string' ? body : JSON.stringify(body));
      }
    });
  } else if (peer.kind === 'pusher') {
    ws.on('message', (d, b) => {
      let m;
      try { m = JSON.parse(text(d, b)); } catch { got.push(`<not JSON> ${text(d, b)}`); return; }
      if (m.event === 'pusher:connection_established') {
        ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
      } else if (m.event === 'pusher_internal:subscription_succeeded') resolveReady();
      else if (m.event === 'pusher:ping') ws.send(JSON.stringify({ event: 'pusher:pong', data: {} }));
      else if (m.event === 'bench' && m.channel === channel) got.push(m.data);
      else if (m.event === 'pusher:error') rejectReady(new Error(`pusher:error ${JSON.stringify(m.data)}`));
    });
  } else throw new Error(`unknown kind ${peer.kind}`);
  return { ready, got, close: () => ws.terminate() };
}

// --------------------------------------------------------------- publishers per kind
function pusherSignedUrl(peer, port, body) {
  const base = new URL(fill(peer.publish_url, { port }));
  const params = {
    auth_key: peer.key,
    auth_timestamp: String(Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    body_md5: createHash('md5').update(body).digest('hex'),
  };
  const query = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
  const sig = createHmac('sha256', peer.secret).update(`POST\n${base.pathname}\n${query}`).digest('hex');
  return `${base.origin}${base.pathname}?${query}&auth_signature=${sig}`;
}

async function publish(peer, port, channel, body) {
  let url = fill(peer.publish_url, { port, channel });
  let payload = body;
  const headers = {};
  if (peer.kind === 'pusher') {
    payload = JSON.stringify({ name: 'bench', channel, data: body });
    url = pusherSignedUrl(peer, port, payload);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(url, { method: 'POST', body: payload, headers });
  const text = await res.text();
  if (res.status < 200 || res.status > 299) throw new Error(`publish ${res.status}: ${text}`);
}

// --------------------------------------------------------------- one peer
async function smoke(peer) {
  const port = await pickPort();
  const channel = 'smoke-1';
  const cmd = fill(peer.start, { port });
  const child = spawn('bash', ['-c', `exec ${cmd}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const t0 = Date.now();
  const subs = [];
  try {
    await waitReady(fill(peer.ready, { port }), child);
    const readyMs = Date.now() - t0;
    subs.push(subscriber(peer, port, channel), subscriber(peer, port, channel));
    await Promise.all(subs.map((s) => s.ready));
    await sleep(200);
    const bodies = ['{"seq":1,"text":"hello"}', 'plain text "quoted" \\ ü €', `{"seq":3,"pad":"${'x'.repeat(200)}"}`];
    for (const b of bodies) await publish(peer, port, channel, b);
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && subs.some((s) => s.got.length < bodies.length)) await sleep(20);
    subs.forEach((s, i) => {
      const want = JSON.stringify(bodies);
      const have = JSON.stringify(s.got);
      if (want !== have) throw new Error(`subscriber ${i + 1} got ${have}, want ${want}`);
    });
    return { ok: true, port, readyMs };
  } catch (e) {
    return { ok: false, port, error: e.message, log: log.split('\n').slice(-15).join('\n') };
  } finally {
    subs.forEach((s) => s.close());
    child.kill('SIGTERM');
    const exited = await Promise.race([
      new Promise((r) => (child.exitCode !== null ? r(true) : child.once('exit', () => r(true)))),
      sleep(5000).then(() => false),
    ]);
    if (!exited) child.kill('SIGKILL');
  }
}

const wanted = process.argv.slice(2);
const peers = manifest.filter((p) => (wanted.length ? wanted.includes(p.name) : fs.existsSync(path.join(ROOT, p.installed_check))));
for (const name of wanted) if (!manifest.some((p) => p.name === name)) { console.error(`unknown peer ${name}`); process.exit(2); }
let failed = 0;
for (const peer of peers) {
  if (!fs.existsSync(path.join(ROOT, peer.installed_check))) {
    console.log(`SKIP ${peer.name}: not installed (${peer.installed_check})`);
    continue;
  }
  const r = await smoke(peer);
  if (r.ok) console.log(`PASS ${peer.name} (port ${r.port}, ready in ${r.readyMs} ms)`);
  else { failed++; console.log(`FAIL ${peer.name} (port ${r.port}): ${r.error}\n${r.log.replace(/^/gm, '    ')}`); }
}
console.log(`${peers.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
