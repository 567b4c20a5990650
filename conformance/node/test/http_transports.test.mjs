// centrifuge-js over HTTP streaming and SSE (bidirectional emulation: commands after the first
// go to /emulation), as a browser without WebSocket runs it. The same SDK calls as over
// WebSocket must behave the same.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CODECS, EventQueue, api, connect, heraldToken, publish, record, sleep, subscribe, uid, waitEvent, withSession,
} from '../lib/harness.mjs';

const json = CODECS.find((c) => c.name === 'json');
const protobuf = CODECS.find((c) => c.name === 'protobuf');
// SSE carries text only: JSON. HTTP streaming carries both.
const CASES = [
  { transport: 'http_stream', codec: json },
  { transport: 'http_stream', codec: protobuf },
  { transport: 'sse', codec: json },
];

for (const { transport, codec } of CASES) {
  describe(`centrifuge-js ${codec.name} over ${transport}`, () => {
    test('connects with a session and node, subscribes, publishes, and receives', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const c = s.httpClient(transport, { token: await heraldToken({ user }) });
        const ctx = await connect(c);
        assert.equal(ctx.transport, transport, `connected over ${transport}: ${JSON.stringify(ctx)}`);
        assert.ok(ctx.client, 'a client id');
        const channel = `chat:room-${uid()}`;
        const sub = c.newSubscription(channel);
        const pubs = new EventQueue(sub, 'publication');
        await subscribe(sub);

        await publish(channel, { from: 'api' });
        assert.deepEqual(codec.decode((await pubs.next()).data), { from: 'api' });
        // A client publication goes through /emulation and comes back on the stream.
        await sub.publish(codec.encode({ from: 'client' }));
        assert.deepEqual(codec.decode((await pubs.next()).data), { from: 'client' });

        const presence = await sub.presence();
        const clients = Object.values(presence.clients);
        assert.equal(clients.length, 1);
        assert.equal(clients[0].user, user);
        const stats = await sub.presenceStats();
        assert.deepEqual([stats.numClients, stats.numUsers], [1, 1]);
        const history = await sub.history({ limit: 10 });
        assert.deepEqual(history.publications.map((p) => codec.decode(p.data)), [{ from: 'api' }, { from: 'client' }]);
        // An RPC without a backend is a command error, and the connection goes on.
        await assert.rejects(c.rpc('nothing', {}), (e) => e.code === 108);
        assert.equal(c.state, 'connected');
      });
    });

    test('answers server pings through /emulation and stays connected past the pong timeout', { timeout: 20000 }, async () => {
      await withSession(codec, async (s) => {
        const c = s.httpClient(transport, { token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        const rec = record(c, ['connecting', 'disconnected', 'error']);
        // ping_interval 3s, pong_timeout 2s (conformance/herald.toml): two pings, two pongs.
        await sleep(7000);
        assert.equal(c.state, 'connected');
        assert.deepEqual(rec.all.map((e) => [e.name, e.ctx]), [], 'no disconnect: the pongs arrived');
      });
    });

    test('recovers the missed publications after the stream is dropped', { timeout: 20000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const c = s.httpClient(transport, {
          token: await heraldToken({ user }),
          minReconnectDelay: 1500,
          maxReconnectDelay: 1500,
        });
        const first = await connect(c);
        const channel = `chat:room-${uid()}`;
        const sub = c.newSubscription(channel, { recoverable: true });
        const pubs = new EventQueue(sub, 'publication');
        const subscribed = new EventQueue(sub, 'subscribed');
        sub.subscribe();
        await subscribed.next();
        await publish(channel, { n: 1 });
        await pubs.next();

        const connecting = waitEvent(c, 'connecting', { what: 'connecting after the server dropped the stream' });
        await api('disconnect', { user, disconnect: { code: 4000, reason: 'drop the stream' } });
        assert.equal((await connecting).code, 4000, 'the disconnect push carries the code');
        for (let n = 2; n <= 4; n++) await publish(channel, { n });

        const again = await waitEvent(c, 'connected', { timeout: 8000, what: 'reconnect' });
        assert.notEqual(again.client, first.client);
        const resubscribed = await subscribed.next(8000);
        assert.equal(resubscribed.recovered, true, `recovered: ${JSON.stringify(resubscribed)}`);
        const missed = await pubs.take(3);
        assert.deepEqual(missed.map((p) => codec.decode(p.data)), [{ n: 2 }, { n: 3 }, { n: 4 }]);
      });
    });

    test('refreshes an expiring token without reconnecting', { timeout: 20000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        let calls = 0;
        const c = s.httpClient(transport, {
          token: await heraldToken({ user, ttl: '2s' }),
          getToken: async () => {
            calls += 1;
            return heraldToken({ user, ttl: '1h' });
          },
        });
        await connect(c);
        const rec = record(c, ['connecting', 'disconnected']);
        // Past the expiry (2s) and expired_close_delay (1s): still the same connection.
        await sleep(4500);
        assert.equal(calls, 1, 'getToken called once');
        assert.equal(c.state, 'connected');
        assert.deepEqual(rec.all.map((e) => [e.name, e.ctx]), []);
      });
    });

    test('a bad token disconnects with 3500 and does not reconnect', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const c = s.httpClient(transport, { token: 'not-a-jwt' });
        const disconnected = waitEvent(c, 'disconnected', { what: 'disconnect on a bad token' });
        c.connect();
        const ctx = await disconnected;
        assert.equal(ctx.code, 3500, JSON.stringify(ctx));
        await sleep(500);
        assert.equal(c.state, 'disconnected');
      });
    });

    test('the server API unsubscribes a client subscription', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const c = s.httpClient(transport, { token: await heraldToken({ user }) });
        await connect(c);
        const channel = `chat:room-${uid()}`;
        const sub = c.newSubscription(channel);
        await subscribe(sub);
        const unsubscribed = waitEvent(sub, 'unsubscribed', { what: 'server unsubscribe' });
        await api('unsubscribe', { channel, user });
        const ctx = await unsubscribed;
        assert.equal(ctx.code, 2000, JSON.stringify(ctx));
      });
    });
  });
}
