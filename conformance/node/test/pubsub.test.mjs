// Subscriptions and publications: server API publish, client publish, `herald publish`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';

import {
  CODECS, EventQueue, HERALD_BIN, HERALD_CONFIG, connect, heraldToken, publish, subscribe, uid, withSession,
} from '../lib/harness.mjs';

const execFileAsync = promisify(execFile);

for (const codec of CODECS) {
  describe(`centrifuge-js ${codec.name}: publications`, () => {
    test('receives server API publications in order with increasing offsets', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        const sub = c.newSubscription(channel);
        const pubs = new EventQueue(sub, 'publication');
        const subscribed = await subscribe(sub);
        assert.equal(subscribed.channel, channel);

        const sent = [];
        const apiOffsets = [];
        for (let i = 1; i <= 3; i++) {
          const data = { text: `hello ${i}`, n: i, nested: { ok: true, list: [1, 'two', null] } };
          sent.push(data);
          const res = await publish(channel, data);
          assert.equal(typeof res.offset, 'number', `publish result must carry the offset: ${JSON.stringify(res)}`);
          assert.ok(typeof res.epoch === 'string' && res.epoch.length > 0, `publish result epoch: ${JSON.stringify(res)}`);
          apiOffsets.push(res.offset);
        }
        assert.equal(apiOffsets[0], 1, `first publication of a new channel has offset 1: ${JSON.stringify(apiOffsets)}`);
        const got = await pubs.take(3);
        assert.deepEqual(got.map((p) => codec.decode(p.data)), sent);
        assert.deepEqual(got.map((p) => p.channel), [channel, channel, channel]);
        const offsets = got.map((p) => p.offset);
        assert.deepEqual(offsets, apiOffsets, `publication offsets must match the publish results`);
        assert.deepEqual(offsets, [offsets[0], offsets[0] + 1, offsets[0] + 2], `offsets increase by one: ${JSON.stringify(offsets)}`);
        for (const p of got) {
          assert.equal(p.info, undefined, 'server API publications carry no client info');
        }

        // Publication tags set through the server API reach the client.
        await publish(channel, { tagged: true }, { tags: { kind: 'greeting', lang: 'en' } });
        const tagged = await pubs.next();
        assert.deepEqual(codec.decode(tagged.data), { tagged: true });
        assert.deepEqual(tagged.tags, { kind: 'greeting', lang: 'en' });
      });
    });

    test('client-side publish reaches subscribers with publisher info', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        const user = `u-${uid()}`;
        const c = s.client({ token: await heraldToken({ user }) });
        const { client: clientId } = await connect(c);
        const sub = c.newSubscription(channel);
        const pubs = new EventQueue(sub, 'publication');
        await subscribe(sub);

        const data = { text: 'from the client', n: 42 };
        const result = await sub.publish(codec.encode(data));
        assert.ok(result && typeof result === 'object', 'publish resolves with a result object');
        const p = await pubs.next();
        assert.deepEqual(codec.decode(p.data), data);
        assert.ok(p.info, `client publications carry the publisher's info: ${JSON.stringify(p)}`);
        assert.equal(p.info.user, user);
        assert.equal(p.info.client, clientId);
        assert.ok(Number.isInteger(p.offset) && p.offset >= 1, `client publication has an offset in a history channel: ${p.offset}`);
      });
    });

    test('client-side publish without a subscription is refused (allow_publish_for_client = false)', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        await assert.rejects(c.publish(`chat:room-${uid()}`, codec.encode({ x: 1 })), (err) => {
          assert.equal(err.code, 103, `expected permission denied (103): ${JSON.stringify(err)}`);
          return true;
        });
        assert.equal(c.state, 'connected', 'a refused publish does not end the connection');
      });
    });

    test('`herald publish` CLI publishes through the server API', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        const sub = c.newSubscription(channel);
        const pubs = new EventQueue(sub, 'publication');
        await subscribe(sub);
        const data = { via: 'cli', n: 7 };
        await execFileAsync(HERALD_BIN, ['publish', channel, JSON.stringify(data), '--config', HERALD_CONFIG], { timeout: 10000 });
        const p = await pubs.next();
        assert.deepEqual(codec.decode(p.data), data);
      });
    });
  });
}

test('centrifuge-js: a JSON client publication reaches a protobuf subscriber as bytes', { timeout: 15000 }, async () => {
  const [json, pb] = CODECS;
  const channel = `chat:room-${uid()}`;
  await withSession(json, async (sj) => {
    await withSession(pb, async (sp) => {
      const cp = sp.client({ token: await heraldToken({ user: `u-${uid()}` }) });
      await connect(cp);
      const subP = cp.newSubscription(channel);
      const pubs = new EventQueue(subP, 'publication');
      await subscribe(subP);

      const cj = sj.client({ token: await heraldToken({ user: `u-${uid()}` }) });
      await connect(cj);
      const subJ = cj.newSubscription(channel);
      await subscribe(subJ);
      await subJ.publish({ cross: 'codec', n: 1 });
      const p = await pubs.next();
      assert.ok(p.data instanceof Uint8Array, 'protobuf subscriber gets bytes');
      assert.deepEqual(pb.decode(p.data), { cross: 'codec', n: 1 });
    });
  });
});
