// Presence, presence stats and join/leave pushes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CODECS, EventQueue, api, connect, heraldToken, subscribe, uid, waitEvent, withSession,
} from '../lib/harness.mjs';

for (const codec of CODECS) {
  describe(`centrifuge-js ${codec.name}: presence`, () => {
    test('presence and presenceStats from the client list both subscribers', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        const userA = `a-${uid()}`;
        const userB = `b-${uid()}`;
        // Connection info (`info` claim) travels into presence.
        const a = s.client({ token: await heraldToken({ user: userA, info: { name: 'Alice' } }) });
        const b = s.client({ token: await heraldToken({ user: userB }) });
        const { client: idA } = await connect(a);
        const { client: idB } = await connect(b);
        const subA = a.newSubscription(channel);
        const subB = b.newSubscription(channel);
        await subscribe(subA);
        await subscribe(subB);

        const presence = await subA.presence();
        assert.ok(presence && presence.clients, `presence result: ${JSON.stringify(presence)}`);
        const ids = Object.keys(presence.clients).sort();
        assert.deepEqual(ids, [idA, idB].sort(), `presence clients: ${JSON.stringify(presence)}`);
        assert.equal(presence.clients[idA].user, userA);
        assert.equal(presence.clients[idA].client, idA);
        assert.ok(presence.clients[idA].connInfo, `conn_info from the token's info claim: ${JSON.stringify(presence.clients[idA])}`);
        assert.deepEqual(codec.decode(presence.clients[idA].connInfo), { name: 'Alice' });
        assert.equal(presence.clients[idB].user, userB);
        assert.equal(presence.clients[idB].client, idB);

        const stats = await subB.presenceStats();
        assert.deepEqual(stats, { numClients: 2, numUsers: 2 });

        // Client-level calls take the channel as an argument.
        const stats2 = await a.presenceStats(channel);
        assert.deepEqual(stats2, { numClients: 2, numUsers: 2 });

        // The server API sees the same.
        const apiPresence = await api('presence', { channel });
        assert.deepEqual(Object.keys(apiPresence.presence || {}).sort(), [idA, idB].sort(), JSON.stringify(apiPresence));

        // After B unsubscribes, presence shrinks.
        subB.unsubscribe();
        let after;
        for (let i = 0; i < 20; i++) {
          after = await subA.presenceStats();
          if (after.numClients === 1) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.deepEqual(after, { numClients: 1, numUsers: 1 });
      });
    });

    test('presence of a channel the client is not subscribed to is refused', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        await assert.rejects(c.presence(`chat:room-${uid()}`), (err) => {
          assert.equal(err.code, 103, `permission denied expected: ${JSON.stringify(err)}`);
          return true;
        });
      });
    });

    test('join and leave of a second client are pushed to the first', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        const userA = `a-${uid()}`;
        const userB = `b-${uid()}`;
        const a = s.client({ token: await heraldToken({ user: userA }) });
        await connect(a);
        const subA = a.newSubscription(channel);
        const joins = new EventQueue(subA, 'join');
        const leaves = new EventQueue(subA, 'leave');
        await subscribe(subA);

        const b = s.client({ token: await heraldToken({ user: userB, info: { name: 'Bob' } }) });
        const { client: idB } = await connect(b);
        const subB = b.newSubscription(channel);
        await subscribe(subB);

        // force_push_join_leave: A gets B's join without asking for join/leave.
        let join = await joins.next();
        if (join.info.user === userA) {
          // A server may push A's own join first; B's must follow.
          join = await joins.next();
        }
        assert.equal(join.channel, channel);
        assert.equal(join.info.user, userB);
        assert.equal(join.info.client, idB);
        assert.ok(join.info.connInfo, `join carries conn_info: ${JSON.stringify(join)}`);
        assert.deepEqual(codec.decode(join.info.connInfo), { name: 'Bob' });

        subB.unsubscribe();
        const leave = await leaves.next();
        assert.equal(leave.channel, channel);
        assert.equal(leave.info.user, userB);
        assert.equal(leave.info.client, idB);
      });
    });

    test('a disconnecting subscriber produces a leave', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const channel = `chat:room-${uid()}`;
        const a = s.client({ token: await heraldToken({ user: `a-${uid()}` }) });
        await connect(a);
        const subA = a.newSubscription(channel);
        await subscribe(subA);
        const userB = `b-${uid()}`;
        const b = s.client({ token: await heraldToken({ user: userB }) });
        const { client: idB } = await connect(b);
        const joined = waitEvent(subA, 'join', { predicate: (j) => j.info.client === idB, what: 'join of B' });
        await subscribe(b.newSubscription(channel));
        await joined;
        const left = waitEvent(subA, 'leave', { predicate: (l) => l.info.client === idB, what: 'leave of B after its disconnect' });
        b.disconnect();
        const leave = await left;
        assert.equal(leave.info.user, userB);
      });
    });
  });
}
