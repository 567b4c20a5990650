// Automatic recovery after the server drops the connection (server API disconnect, code 4000).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CODECS, EventQueue, api, connect, heraldToken, publish, subscribe, uid, waitEvent, withSession,
} from '../lib/harness.mjs';

for (const codec of CODECS) {
  describe(`centrifuge-js ${codec.name}: recovery`, () => {
    test('resubscribes with recovered === true and gets exactly the missed publications', { timeout: 20000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        const user = `u-${uid()}`;
        // A fixed 1.5 s reconnect delay: the publications below happen while the client is away.
        const c = s.client({
          token: await heraldToken({ user }),
          minReconnectDelay: 1500,
          maxReconnectDelay: 1500,
        });
        const { client: firstClientId } = await connect(c);
        const sub = c.newSubscription(channel, { recoverable: true });
        const pubs = new EventQueue(sub, 'publication');
        const subscribedEvents = new EventQueue(sub, 'subscribed');
        sub.subscribe();
        const first = await subscribedEvents.next();
        assert.equal(first.recoverable, true, `subscribe reply must grant recovery: ${JSON.stringify(first)}`);
        assert.equal(first.wasRecovering, false);
        assert.ok(first.streamPosition && typeof first.streamPosition.epoch === 'string' && first.streamPosition.epoch !== '',
          `a recoverable subscription gets a stream position: ${JSON.stringify(first)}`);

        // Two publications while connected.
        await publish(channel, { n: 1 });
        await publish(channel, { n: 2 });
        const live = await pubs.take(2);
        assert.deepEqual(live.map((p) => codec.decode(p.data)), [{ n: 1 }, { n: 2 }]);
        const lastOffset = live[1].offset;

        // Drop the connection from the server side with a reconnecting code.
        const connecting = waitEvent(c, 'connecting', { timeout: 5000, what: 'connecting after server disconnect' });
        await api('disconnect', { user, disconnect: { code: 4000, reason: 'conformance reconnect' } });
        const connectingCtx = await connecting;
        assert.equal(connectingCtx.code, 4000, `connecting reason carries the disconnect code: ${JSON.stringify(connectingCtx)}`);
        assert.equal(sub.state, 'subscribing');

        // Three publications while the client is away.
        const missed = [];
        for (let i = 3; i <= 5; i++) {
          const res = await publish(channel, { n: i });
          missed.push(res.offset);
        }
        assert.equal(c.state, 'connecting', 'client must still be away while we published');

        const reconnected = await waitEvent(c, 'connected', { timeout: 6000, what: 'reconnect' });
        assert.notEqual(reconnected.client, firstClientId, 'a new connection has a new client id');
        const again = await subscribedEvents.next(6000);
        assert.equal(again.wasRecovering, true, `resubscribe must try recovery: ${JSON.stringify(again)}`);
        assert.equal(again.recovered, true, `resubscribe must recover: ${JSON.stringify(again)}`);
        assert.equal(again.hasRecoveredPublications, true, `recovered publications expected: ${JSON.stringify(again)}`);

        const recovered = await pubs.take(3);
        assert.deepEqual(recovered.map((p) => codec.decode(p.data)), [{ n: 3 }, { n: 4 }, { n: 5 }]);
        assert.deepEqual(recovered.map((p) => p.offset), [lastOffset + 1, lastOffset + 2, lastOffset + 3]);
        assert.deepEqual(recovered.map((p) => p.offset), missed);

        // Nothing more (no duplicates) — and live delivery continues.
        await publish(channel, { n: 6 });
        const next = await pubs.next();
        assert.deepEqual(codec.decode(next.data), { n: 6 }, 'the publication after recovery comes next, no duplicate before it');
        assert.equal(next.offset, lastOffset + 4);
      });
    });

    test('subscribe with since: recovers from a known position, reports recovered false for an unknown epoch', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        let epoch = '';
        for (let i = 1; i <= 5; i++) epoch = (await publish(channel, { n: i })).epoch;
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);

        const sub = c.newSubscription(channel, { since: { offset: 2, epoch }, recoverable: true });
        const pubs = new EventQueue(sub, 'publication');
        const ctx = await new Promise((resolve, reject) => {
          sub.once('subscribed', resolve);
          sub.once('unsubscribed', reject);
          sub.subscribe();
        });
        assert.equal(ctx.wasRecovering, true);
        assert.equal(ctx.recovered, true, `recovery from offset 2: ${JSON.stringify(ctx)}`);
        const got = await pubs.take(3);
        assert.deepEqual(got.map((p) => codec.decode(p.data)), [{ n: 3 }, { n: 4 }, { n: 5 }]);
        assert.deepEqual(got.map((p) => p.offset), [3, 4, 5]);

        const other = c.newSubscription(`${channel}-x`, { since: { offset: 1, epoch: 'not-the-epoch' }, recoverable: true });
        const ctx2 = await new Promise((resolve, reject) => {
          other.once('subscribed', resolve);
          other.once('unsubscribed', reject);
          other.subscribe();
        });
        assert.equal(ctx2.wasRecovering, true);
        assert.equal(ctx2.recovered, false, `an unknown epoch cannot be recovered: ${JSON.stringify(ctx2)}`);
      });
    });

    test('disconnect with a non-reconnecting code ends the client', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const c = s.client({ token: await heraldToken({ user }), minReconnectDelay: 100, maxReconnectDelay: 200 });
        await connect(c);
        const disconnected = waitEvent(c, 'disconnected', { timeout: 5000, what: 'disconnected after API disconnect 4500' });
        await api('disconnect', { user, disconnect: { code: 4500, reason: 'go away' } });
        const ctx = await disconnected;
        assert.equal(ctx.code, 4500);
        assert.equal(ctx.reason, 'go away');
        assert.equal(c.state, 'disconnected');
      });
    });
  });
}
