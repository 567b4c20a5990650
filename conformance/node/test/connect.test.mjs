// Connection: JWT auth, rejected tokens, server pings.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CODECS, SECRET, api, connect, heraldToken, record, signJwt, sleep, uid, waitEvent, withSession,
} from '../lib/harness.mjs';

for (const codec of CODECS) {
  describe(`centrifuge-js ${codec.name}: connection`, () => {
    test('connects with a JWT from `herald token` and reports the client id', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const token = await heraldToken({ user });
        const c = s.client({ token });
        const ctx = await connect(c);
        assert.equal(typeof ctx.client, 'string');
        assert.ok(ctx.client.length > 0, 'connected context must carry a non-empty client id');
        assert.equal(ctx.transport, 'websocket');
        assert.equal(c.state, 'connected');

        // The server knows this connection: presence of a server-side view is not needed,
        // the `info` API counts it.
        const info = await api('info', {});
        assert.ok(Array.isArray(info.nodes) && info.nodes.length >= 1, `info.nodes: ${JSON.stringify(info)}`);
        const clients = info.nodes.reduce((n, node) => n + (node.num_clients || 0), 0);
        assert.ok(clients >= 1, `info must count at least this client: ${JSON.stringify(info)}`);
      });
    });

    test('a token signed with another secret ends disconnected with 3500 and no reconnect', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const token = signJwt({ sub: `u-${uid()}`, exp: Math.floor(Date.now() / 1000) + 3600 }, `${SECRET}-wrong`);
        const c = s.client({ token, minReconnectDelay: 100, maxReconnectDelay: 200 });
        const rec = record(c, ['connecting', 'connected', 'disconnected']);
        const disconnected = waitEvent(c, 'disconnected', { timeout: 5000, what: 'disconnect for invalid token' });
        c.connect();
        const ctx = await disconnected;
        assert.equal(ctx.code, 3500, `disconnect code for an invalid token: ${JSON.stringify(ctx)}`);
        assert.equal(c.state, 'disconnected');
        // No reconnect attempt afterwards (reconnect delay is 100-200 ms here).
        await sleep(1000);
        assert.equal(c.state, 'disconnected');
        assert.equal(rec.by.connected.length, 0, 'must never be connected');
        assert.equal(rec.by.connecting.length, 1, `exactly one connecting (the initial connect): ${JSON.stringify(rec.by.connecting)}`);
      });
    });

    test('answers server pings and stays connected across several ping intervals', { timeout: 20000 }, async () => {
      await withSession(codec, async (s) => {
        const token = await heraldToken({ user: `u-${uid()}` });
        const c = s.client({ token, maxServerPingDelay: 4000 });
        await connect(c);
        const rec = record(c, ['connecting', 'disconnected', 'error']);
        // herald.toml: ping_interval 3s, pong_timeout 2s.
        await sleep(7500);
        assert.equal(c.state, 'connected');
        assert.deepEqual(rec.all.map((e) => [e.name, e.ctx]), [], 'no reconnect, disconnect or error while idle');
        const pings = c.frameLog.frames.filter((f) => (codec.name === 'json' ? / <- \{\}$/.test(f) : / <- <1 bytes> 00 /.test(f)));
        assert.ok(pings.length >= 2, `expected >= 2 server pings in 7.5 s, got ${pings.length}`);
        const pongs = c.frameLog.frames.filter((f) => (codec.name === 'json' ? / -> \{\}$/.test(f) : / -> <1 bytes> 00 /.test(f)));
        assert.ok(pongs.length >= 2, `expected the SDK to send >= 2 pongs (connect reply must say pong: true), got ${pongs.length}`);
      });
    });
  });
}
