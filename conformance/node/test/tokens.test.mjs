// Token lifecycle: refresh of an expiring token, expired token at connect, subscription tokens.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CODECS, EventQueue, SECRET, connect, heraldToken, publish, record, signJwt, sleep, subscribe, uid, waitEvent, withSession,
} from '../lib/harness.mjs';

for (const codec of CODECS) {
  describe(`centrifuge-js ${codec.name}: tokens`, () => {
    test('an expiring token is refreshed through getToken without reconnecting', { timeout: 20000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const calls = [];
        const c = s.client({
          token: await heraldToken({ user, ttl: '2s' }),
          getToken: async () => {
            calls.push(Date.now());
            return heraldToken({ user, ttl: '1h' });
          },
        });
        const connectedAt = Date.now();
        await connect(c);
        const rec = record(c, ['connecting', 'disconnected', 'error']);
        const channel = `chat:room-${uid()}`;
        const sub = c.newSubscription(channel);
        const pubs = new EventQueue(sub, 'publication');
        await subscribe(sub);

        // The connect reply says expires/ttl ~2s: the SDK asks for a new token then.
        const deadline = Date.now() + 5000;
        while (calls.length === 0 && Date.now() < deadline) await sleep(50);
        assert.ok(calls.length >= 1, 'getToken was never called: connect reply must carry expires: true and ttl for a token with exp');
        assert.ok(calls[0] - connectedAt < 4000, `getToken called ${calls[0] - connectedAt} ms after connect`);

        // Past the original expiry plus expired_close_delay (1s): the connection must still be
        // the same one, i.e. the refresh command was accepted.
        await sleep(Math.max(0, connectedAt + 4500 - Date.now()));
        assert.equal(c.state, 'connected');
        assert.deepEqual(rec.all.map((e) => [e.name, e.ctx]), [], 'no reconnect, disconnect or error around the refresh');
        assert.equal(calls.length, 1, 'the refreshed 1h token needs no further refresh');
        if (codec.name === 'json') {
          const refreshFrames = c.frameLog.frames.filter((f) => f.includes(' -> ') && f.includes('"refresh"'));
          assert.equal(refreshFrames.length, 1, 'exactly one refresh command was sent');
        }

        await publish(channel, { after: 'refresh' });
        assert.deepEqual(codec.decode((await pubs.next()).data), { after: 'refresh' });
      });
    });

    test('an already expired token gets error 109, then getToken, then connects', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const now = Math.floor(Date.now() / 1000);
        const expired = signJwt({ sub: user, iat: now - 120, exp: now - 60 });
        let calls = 0;
        const c = s.client({
          token: expired,
          minReconnectDelay: 100,
          maxReconnectDelay: 300,
          getToken: async () => {
            calls += 1;
            return heraldToken({ user, ttl: '1h' });
          },
        });
        const errors = new EventQueue(c, 'error');
        const ctx = await connect(c, 8000);
        assert.ok(ctx.client);
        assert.equal(calls, 1, 'getToken called once after the expired token was refused');
        const err = await errors.next(100);
        assert.equal(err.type, 'connect');
        assert.equal(err.error.code, 109, `token expired error expected: ${JSON.stringify(err)}`);
      });
    });

    test('secret namespace: subscribe without token is denied (103), with a subscription token succeeds', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const channel = `secret:${uid()}`;
        const c = s.client({ token: await heraldToken({ user }) });
        await connect(c);

        const denied = c.newSubscription(channel);
        const unsubscribed = waitEvent(denied, 'unsubscribed', { timeout: 5000, what: 'unsubscribed after permission denied' });
        denied.subscribe();
        const u = await unsubscribed;
        assert.equal(u.code, 103, `permission denied expected: ${JSON.stringify(u)}`);
        assert.equal(denied.state, 'unsubscribed');
        c.removeSubscription(denied);

        const subToken = await heraldToken({ user, channel });
        const allowed = c.newSubscription(channel, { token: subToken });
        const pubs = new EventQueue(allowed, 'publication');
        const ok = await subscribe(allowed);
        assert.equal(ok.channel, channel);
        await publish(channel, { secret: true });
        assert.deepEqual(codec.decode((await pubs.next()).data), { secret: true });
      });
    });

    test('secret namespace: a subscription token is fetched with the subscription getToken', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const channel = `secret:${uid()}`;
        const c = s.client({ token: await heraldToken({ user }) });
        await connect(c);
        const asked = [];
        const sub = c.newSubscription(channel, {
          getToken: async (ctx) => {
            asked.push(ctx.channel);
            return heraldToken({ user, channel: ctx.channel });
          },
        });
        await subscribe(sub);
        assert.deepEqual(asked, [channel]);
      });
    });

    test('a subscription token for another channel disconnects with 3500 (as Centrifugo does)', { timeout: 15000 }, async () => {
      // Centrifugo internal/client/handler.go OnSubscribe: token channel mismatch ->
      // centrifuge.DisconnectInvalidToken.
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const c = s.client({ token: await heraldToken({ user }), minReconnectDelay: 100, maxReconnectDelay: 200 });
        await connect(c);
        const channel = `secret:${uid()}`;
        const sub = c.newSubscription(channel, { token: await heraldToken({ user, channel: `secret:other-${uid()}` }) });
        const subscribed = record(sub, ['subscribed']);
        const disconnected = waitEvent(c, 'disconnected', { timeout: 5000, what: 'disconnect for a wrong-channel subscription token' });
        sub.subscribe();
        const ctx = await disconnected;
        assert.equal(ctx.code, 3500, `invalid token disconnect expected: ${JSON.stringify(ctx)}`);
        assert.equal(subscribed.by.subscribed.length, 0);
        await sleep(500);
        assert.equal(c.state, 'disconnected', 'no reconnect after 3500');
      });
    });

    test('a subscription token with a bad signature is refused with 103 (as Centrifugo does)', { timeout: 15000 }, async () => {
      // Centrifugo OnSubscribe: ErrInvalidToken from the verifier -> ErrorPermissionDenied.
      await withSession(codec, async (s) => {
        const user = `u-${uid()}`;
        const c = s.client({ token: await heraldToken({ user }) });
        await connect(c);
        const channel = `secret:${uid()}`;
        const bad = signJwt({ sub: user, channel, exp: Math.floor(Date.now() / 1000) + 3600 }, `${SECRET}-wrong`);
        const sub = c.newSubscription(channel, { token: bad });
        const unsubscribed = waitEvent(sub, 'unsubscribed', { timeout: 5000, what: 'unsubscribed for a badly signed subscription token' });
        sub.subscribe();
        const u = await unsubscribed;
        assert.equal(u.code, 103, `permission denied expected: ${JSON.stringify(u)}`);
        assert.equal(c.state, 'connected', 'the connection survives a refused subscription');
      });
    });
  });
}
