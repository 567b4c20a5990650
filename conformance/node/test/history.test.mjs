// History from the client: limit, reverse, since, stream position.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CODECS, api, connect, heraldToken, publish, subscribe, uid, withSession,
} from '../lib/harness.mjs';

for (const codec of CODECS) {
  describe(`centrifuge-js ${codec.name}: history`, () => {
    test('history with limit, reverse and since', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        const sub = c.newSubscription(channel);
        await subscribe(sub);

        let epoch = '';
        for (let i = 1; i <= 5; i++) {
          const res = await publish(channel, { n: i });
          epoch = res.epoch;
        }

        const all = await sub.history({ limit: 10 });
        assert.deepEqual(all.publications.map((p) => codec.decode(p.data)), [1, 2, 3, 4, 5].map((n) => ({ n })));
        assert.deepEqual(all.publications.map((p) => p.offset), [1, 2, 3, 4, 5]);
        assert.equal(all.offset, 5, `stream top offset: ${JSON.stringify({ offset: all.offset, epoch: all.epoch })}`);
        assert.equal(all.epoch, epoch, 'history epoch equals the publish result epoch');

        const firstTwo = await sub.history({ limit: 2 });
        assert.deepEqual(firstTwo.publications.map((p) => p.offset), [1, 2], 'limit 2 without since returns the oldest two');
        assert.equal(firstTwo.offset, 5);

        const lastTwo = await sub.history({ limit: 2, reverse: true });
        assert.deepEqual(lastTwo.publications.map((p) => p.offset), [5, 4], 'reverse limit 2 returns the newest two, newest first');
        assert.deepEqual(lastTwo.publications.map((p) => codec.decode(p.data)), [{ n: 5 }, { n: 4 }]);

        const since = await sub.history({ limit: 10, since: { offset: 3, epoch } });
        assert.deepEqual(since.publications.map((p) => p.offset), [4, 5], 'since offset 3 returns 4 and 5');

        const top = await sub.history({});
        assert.deepEqual(top.publications, [], 'no limit: only the stream position');
        assert.equal(top.offset, 5);
        assert.equal(top.epoch, epoch);

        // Client-level call with the channel as an argument.
        const viaClient = await c.history(channel, { limit: 1, reverse: true });
        assert.deepEqual(viaClient.publications.map((p) => codec.decode(p.data)), [{ n: 5 }]);

        // Server API agrees.
        const apiHist = await api('history', { channel, limit: 10 });
        assert.deepEqual(apiHist.publications.map((p) => p.data), [1, 2, 3, 4, 5].map((n) => ({ n })));
        assert.equal(apiHist.offset, 5);
        assert.equal(apiHist.epoch, epoch);
      });
    });

    test('history of a channel the client is not subscribed to is refused', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        await assert.rejects(c.history(`chat:room-${uid()}`, { limit: 10 }), (err) => {
          assert.equal(err.code, 103, `permission denied expected: ${JSON.stringify(err)}`);
          return true;
        });
      });
    });
  });
}
