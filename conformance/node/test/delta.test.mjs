// Fossil delta compression (subscription option delta: 'fossil').
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CODECS, EventQueue, connect, heraldToken, publish, uid, withSession,
} from '../lib/harness.mjs';

function payload(i) {
  return {
    title: 'delta compression conformance',
    body: 'lorem ipsum dolor sit amet, '.repeat(20),
    counter: i,
    tags: ['alpha', 'beta', `gamma-${i}`],
  };
}

for (const codec of CODECS) {
  describe(`centrifuge-js ${codec.name}: delta`, () => {
    test('similar publications arrive intact on a fossil delta subscription', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        const sub = c.newSubscription(channel, { delta: 'fossil' });
        const pubs = new EventQueue(sub, 'publication');
        await new Promise((resolve, reject) => {
          sub.once('subscribed', resolve);
          sub.once('unsubscribed', (ctx) => reject(new Error(`subscribe with delta refused: ${JSON.stringify(ctx)}`)));
          sub.subscribe();
        });

        const sent = [payload(1), payload(2), payload(3)];
        for (const data of sent) {
          // `delta: true` is the Centrifugo server API flag asking for delta publications.
          await publish(channel, data, { delta: true });
        }
        const got = await pubs.take(3);
        assert.deepEqual(got.map((p) => codec.decode(p.data)), sent);
        assert.deepEqual(got.map((p) => p.offset), [1, 2, 3]);
        const stats = sub.deltaStats();
        assert.equal(stats.numPublications, 3, `delta must be negotiated (subscribe reply delta: true): ${JSON.stringify(stats)}`);
      });
    });

    test('the server actually sends fossil deltas for similar publications', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        const sub = c.newSubscription(channel, { delta: 'fossil' });
        const pubs = new EventQueue(sub, 'publication');
        await new Promise((resolve, reject) => {
          sub.once('subscribed', resolve);
          sub.once('unsubscribed', (ctx) => reject(new Error(`subscribe with delta refused: ${JSON.stringify(ctx)}`)));
          sub.subscribe();
        });
        await publish(channel, payload(1), { delta: true });
        await publish(channel, payload(2), { delta: true });
        const got = await pubs.take(2);
        assert.deepEqual(got.map((p) => codec.decode(p.data)), [payload(1), payload(2)]);
        const stats = sub.deltaStats();
        assert.equal(stats.numFullPayloads, 1, `first publication is full: ${JSON.stringify(stats)}`);
        assert.equal(stats.numDeltaPayloads, 1, `second publication is a delta: ${JSON.stringify(stats)}`);
        assert.ok(stats.bytesReceived < stats.bytesDecoded, `deltas save bytes: ${JSON.stringify(stats)}`);
      });
    });
  });
}
