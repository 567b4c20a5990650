// Server-side subscriptions: channels claim of the connection token, server API subscribe/unsubscribe.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CODECS, EventQueue, api, connect, heraldToken, publish, uid, waitEvent, withSession,
} from '../lib/harness.mjs';

for (const codec of CODECS) {
  describe(`centrifuge-js ${codec.name}: server-side subscriptions`, () => {
    test('channels from the token are subscribed on connect and deliver publications', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const ch1 = `chat:srv-${uid()}`;
        const ch2 = `news-${uid()}`;
        const c = s.client({ token: await heraldToken({ user, channels: [ch1, ch2] }) });
        const subscribed = new EventQueue(c, 'subscribed');
        const pubs = new EventQueue(c, 'publication');
        await connect(c);
        const subs = await subscribed.take(2);
        assert.deepEqual(subs.map((x) => x.channel).sort(), [ch1, ch2].sort());

        await publish(ch1, { to: 'ch1' });
        await publish(ch2, { to: 'ch2' });
        const got = await pubs.take(2);
        assert.deepEqual(got.map((p) => [p.channel, codec.decode(p.data)]), [[ch1, { to: 'ch1' }], [ch2, { to: 'ch2' }]]);
        assert.equal(got[0].offset, 1, 'ch1 keeps history, so its publications carry offsets');
      });
    });

    test('server API subscribe and unsubscribe reach a connected client', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const channel = `chat:srv-${uid()}`;
        const c = s.client({ token: await heraldToken({ user }) });
        await connect(c);
        const subscribed = waitEvent(c, 'subscribed', { predicate: (x) => x.channel === channel, what: 'server-side subscribed push' });
        await api('subscribe', { user, channel });
        await subscribed;
        const pubs = new EventQueue(c, 'publication');
        await publish(channel, { hello: 'server-side' });
        const p = await pubs.next();
        assert.equal(p.channel, channel);
        assert.deepEqual(codec.decode(p.data), { hello: 'server-side' });

        const unsubscribed = waitEvent(c, 'unsubscribed', { predicate: (x) => x.channel === channel, what: 'server-side unsubscribed push' });
        await api('unsubscribe', { user, channel });
        await unsubscribed;
      });
    });

    test('server API unsubscribe ends a client-side subscription', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const channel = `chat:room-${uid()}`;
        const c = s.client({ token: await heraldToken({ user }) });
        await connect(c);
        const sub = c.newSubscription(channel);
        await new Promise((resolve, reject) => {
          sub.once('subscribed', resolve);
          sub.once('unsubscribed', reject);
          sub.subscribe();
        });
        const unsubscribed = waitEvent(sub, 'unsubscribed', { what: 'unsubscribe push for a client-side subscription' });
        await api('unsubscribe', { user, channel });
        const ctx = await unsubscribed;
        assert.equal(sub.state, 'unsubscribed');
        assert.equal(ctx.code, 2000, `server unsubscribe push code (Centrifugo: 2000 "server unsubscribe"): ${JSON.stringify(ctx)}`);
      });
    });
  });
}
