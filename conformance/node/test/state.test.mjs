// What the official SDK test suites rely on beyond the basics: getState with reject-unrecovered
// (error 112), delta_publish namespaces, publication filtering by tags, and disconnects that
// travel in the close frame only.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CODECS, EventQueue, api, connect, heraldToken, publish, raceEvents, subscribe, uid, waitEvent, withSession,
} from '../lib/harness.mjs';

function payload(i) {
  return { title: 'state conformance', body: 'lorem ipsum dolor sit amet, '.repeat(10), counter: i };
}

for (const codec of CODECS) {
  describe(`centrifuge-js ${codec.name}: getState, delta_publish, tags filter`, () => {
    test('getState is called again when the position is gone (error 112), then live delivery works', { timeout: 20000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `smallhistory:state-${uid()}`;
        await publish(channel, payload(0));
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }), minReconnectDelay: 50, maxReconnectDelay: 100 });
        let getStateCalls = 0;
        const sub = c.newSubscription(channel, {
          minResubscribeDelay: 50,
          maxResubscribeDelay: 100,
          getState: async () => {
            getStateCalls += 1;
            const top = await api('history', { channel, limit: 0 });
            return { offset: top.offset, epoch: top.epoch };
          },
        });
        const pubs = new EventQueue(sub, 'publication');
        await connect(c);
        await subscribe(sub);
        assert.equal(getStateCalls, 1, 'getState on the first subscribe');

        c.disconnect();
        for (let i = 1; i <= 5; i += 1) await publish(channel, payload(i));
        // history_size is 2: the saved position is gone. The subscribe carries flag 3, the
        // server answers 112, the SDK reloads its state and subscribes again.
        const resubscribed = waitEvent(sub, 'subscribed', { timeout: 8000, what: 'subscribed after 112' });
        c.connect();
        await resubscribed;
        assert.equal(getStateCalls, 2, 'getState again after error 112');
        const frames = c.frameLog.frames.join('\n');
        assert.match(frames, /"code":112|unrecoverable position/, 'the server refused the old position with 112');

        await publish(channel, { live: true });
        assert.deepEqual(codec.decode((await pubs.next()).data), { live: true });
      });
    });

    test('a server disconnect travels in the close frame only (code and reason)', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const c = s.client({ token: await heraldToken({ user }) });
        await connect(c);
        const disconnected = waitEvent(c, 'disconnected', { what: 'disconnected after API disconnect 4501' });
        await api('disconnect', { user, disconnect: { code: 4501, reason: 'moved away' } });
        const ctx = await disconnected;
        assert.deepEqual([ctx.code, ctx.reason], [4501, 'moved away']);
        const frames = c.frameLog.frames.join('\n');
        assert.match(frames, /close code=4501 reason="moved away"/, frames);
        // No disconnect push before the close frame (its reason would show in a message).
        const received = c.frameLog.frames.filter((f) => f.includes(' <- ')).join('\n');
        assert.doesNotMatch(received, /moved away/, 'no disconnect push before the close frame');
      });
    });

    test('zero counts and positions are numbers, not missing (presence stats, history)', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:empty-${uid()}`;
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        const sub = c.newSubscription(channel);
        await subscribe(sub);
        // Nothing published yet: the stream is at offset 0.
        const history = await sub.history({ limit: 0 });
        assert.equal(history.offset, 0, JSON.stringify(history));
        assert.equal(typeof history.epoch, 'string');
        assert.deepEqual(history.publications, []);
        const stats = await sub.presenceStats();
        assert.deepEqual(stats, { numClients: 1, numUsers: 1 });
        // A user with no connection: every count is a 0 the SDK can read.
        const empty = await api('presence_stats', { channel: `chat:nobody-${uid()}` });
        assert.deepEqual(empty, { num_clients: 0, num_users: 0 });
      });
    });

    test('a delta_publish namespace sends deltas without the publisher asking', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `deltapub:room-${uid()}`;
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        const sub = c.newSubscription(channel, { delta: 'fossil' });
        const pubs = new EventQueue(sub, 'publication');
        await subscribe(sub);
        const sent = [payload(1), payload(2), payload(3)];
        for (const data of sent) await publish(channel, data); // no `delta` flag
        const got = await pubs.take(3);
        assert.deepEqual(got.map((p) => codec.decode(p.data)), sent);
        const stats = sub.deltaStats();
        assert.equal(stats.numFullPayloads, 1, `first full: ${JSON.stringify(stats)}`);
        assert.equal(stats.numDeltaPayloads, 2, `then deltas: ${JSON.stringify(stats)}`);
      });
    });

    test('a tags filter delivers only matching publications', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `tagged:ticks-${uid()}`;
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        const tagsFilter = { op: 'and', nodes: [
          { key: 'ticker', cmp: 'eq', val: 'AAPL' },
          { key: 'price', cmp: 'gte', val: '100' },
        ] };
        const sub = c.newSubscription(channel, { tagsFilter });
        const pubs = new EventQueue(sub, 'publication');
        await subscribe(sub);
        const ticks = [['AAPL', '150'], ['BTC', '150'], ['AAPL', '99.99'], ['AAPL', '100']];
        for (const [i, [ticker, price]] of ticks.entries()) {
          await publish(channel, { i }, { tags: { ticker, price } });
        }
        const got = await pubs.take(2);
        assert.deepEqual(got.map((p) => codec.decode(p.data)), [{ i: 0 }, { i: 3 }]);
        assert.deepEqual(got.map((p) => p.tags), [{ ticker: 'AAPL', price: '150' }, { ticker: 'AAPL', price: '100' }]);
        await assert.rejects(pubs.next(300), /timeout/, 'nothing else arrives');

        // Where the namespace does not allow filters, the subscribe is refused with 107.
        const refused = c.newSubscription(`chat:ticks-${uid()}`, { tagsFilter: { key: 'ticker', cmp: 'eq', val: 'AAPL' } });
        const p = raceEvents(refused, 'unsubscribed', 'subscribed', { what: 'unsubscribed with 107' });
        refused.subscribe();
        const ctx = await p;
        assert.equal(ctx.code, 107, JSON.stringify(ctx));
      });
    });
  });
}
