// The official Svix JavaScript SDK (`svix`) against Herald's management API (/api/v1), and the
// webhooks Herald sends, verified with `standardwebhooks` and the svix SDK's `Webhook`.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  CODECS, EventQueue, HTTP, api, connect, heraldToken, signJwt, sleep, subscribe, uid, withSession,
} from '../lib/harness.mjs';
import {
  ApiException,
  MANAGEMENT_SECRET,
  SVIX_HEADERS_HTTP,
  StandardWebhook,
  Svix,
  SvixWebhook,
  allPages,
  apiError,
  assertRejectedByBoth,
  startReceiver,
  svixClient,
  until,
  verifyBoth,
} from '../lib/webhooks.mjs';

// MessageStatus / MessageAttemptTriggerType values of the Svix API.
const SUCCESS = 0;
const FAIL = 2;
const SCHEDULED = 0;
const MANUAL = 1;

let svix;
let receiver;

before(async () => {
  svix = await svixClient();
  receiver = await startReceiver();
});

after(async () => {
  await receiver?.close();
});

/** A fresh application with one endpoint on the receiver (path `/<name>-<uid>`). */
async function appWithEndpoint(name, endpointIn = {}) {
  const id = uid();
  const app = await svix.application.create({ name: `node ${name}`, uid: `node-${name}-${id}` });
  const path = `/${name}-${id}`;
  const endpoint = await svix.endpoint.create(app.id, { url: receiver.url(path), description: name, ...endpointIn });
  const { key: secret } = await svix.endpoint.getSecret(app.id, endpoint.id);
  return { app, endpoint, path, secret };
}

/** The attempts of a message, once there are at least `n` (they are recorded after the HTTP call). */
async function attemptsOf(appId, msgId, n, timeout = 10000) {
  return until(async () => {
    const page = await svix.messageAttempt.listByMsg(appId, msgId, { withContent: true });
    return page.data.length >= n ? page.data : null;
  }, { timeout, what: `${n} attempt(s) of ${msgId}` });
}

function assertFreshTimestamp(headerValue, prefix) {
  const ts = Number(headerValue);
  assert.ok(Number.isInteger(ts), `${prefix}-timestamp is an integer: ${headerValue}`);
  assert.ok(Math.abs(ts - Date.now() / 1000) < 30, `${prefix}-timestamp is now: ${headerValue}`);
}

describe('svix (node): applications and event types', () => {
  test('create, get by id and uid, getOrCreate (get_if_exists), duplicate uid is 409', async () => {
    const appUid = `node-app-${uid()}`;
    const created = await svix.application.create({ name: 'node app', uid: appUid, metadata: { team: 'conformance' } });
    assert.match(created.id, /^app_/);
    assert.equal(created.uid, appUid);
    assert.equal(created.name, 'node app');
    assert.deepEqual(created.metadata, { team: 'conformance' });
    assert.ok(created.createdAt instanceof Date && !Number.isNaN(created.createdAt.getTime()));

    const byId = await svix.application.get(created.id);
    const byUid = await svix.application.get(appUid);
    assert.equal(byId.id, created.id);
    assert.equal(byUid.id, created.id);

    const again = await svix.application.getOrCreate({ name: 'ignored name', uid: appUid });
    assert.equal(again.id, created.id, 'getOrCreate returns the existing application');
    assert.equal(again.name, 'node app');

    const fresh = await svix.application.getOrCreate({ name: 'node app 2', uid: `node-app2-${uid()}` });
    assert.notEqual(fresh.id, created.id, 'getOrCreate creates a missing application');

    const dup = await apiError(() => svix.application.create({ name: 'dup', uid: appUid }), 'duplicate uid');
    assert.equal(dup.code, 409);
    assert.equal(dup.body.code, 'conflict');

    const listed = await allPages((iterator) => svix.application.list({ limit: 100, iterator }));
    assert.ok(listed.some((a) => a.id === created.id), 'the application is listed');
  });

  test('event type create and get', async () => {
    const name = `node.created.${uid()}`;
    const et = await svix.eventType.create({ name, description: 'A node conformance event' });
    assert.equal(et.name, name);
    assert.equal(et.description, 'A node conformance event');
    assert.equal(et.deprecated, false);
    const got = await svix.eventType.get(name);
    assert.equal(got.name, name);
    const dup = await apiError(() => svix.eventType.create({ name, description: 'again' }), 'duplicate event type');
    assert.equal(dup.code, 409);
  });
});

describe('svix (node): endpoint and application updates', () => {
  test('endpoint get by uid, patch, headers, list, delete; application patch and delete', async () => {
    const { app, endpoint, path, secret } = await appWithEndpoint('crud', {
      uid: `ep-crud-${uid()}`,
      headers: { 'X-Conformance': 'node' },
    });
    assert.equal((await svix.endpoint.get(app.id, endpoint.uid)).id, endpoint.id, 'get by endpoint uid');
    const patched = await svix.endpoint.patch(app.id, endpoint.id, { description: 'patched', channels: ['c1'] });
    assert.equal(patched.description, 'patched');
    assert.deepEqual(patched.channels, ['c1']);
    assert.equal(patched.url, receiver.url(path), 'PATCH keeps what it does not name');
    await svix.endpoint.patch(app.id, endpoint.id, { channels: null });
    assert.equal((await svix.endpoint.get(app.id, endpoint.id)).channels ?? null, null, 'PATCH with null clears channels');

    assert.deepEqual((await svix.endpoint.getHeaders(app.id, endpoint.id)).headers, { 'X-Conformance': 'node' });
    await svix.endpoint.setHeaders(app.id, endpoint.id, { headers: { 'X-One': '1' } });
    await svix.endpoint.patchHeaders(app.id, endpoint.id, { headers: { 'X-Two': '2' } });
    assert.deepEqual((await svix.endpoint.getHeaders(app.id, endpoint.id)).headers, { 'X-One': '1', 'X-Two': '2' });

    await svix.message.create(app.id, { eventType: 'crud.test', payload: { h: true } });
    const [req] = await receiver.wait(path, 1);
    assert.equal(req.headers['x-one'], '1');
    assert.equal(req.headers['x-two'], '2');
    assert.deepEqual(verifyBoth(secret, req), { h: true });

    const listed = await svix.endpoint.list(app.id);
    assert.deepEqual(listed.data.map((e) => e.id), [endpoint.id]);
    assert.equal(listed.done, true);
    await svix.endpoint.delete(app.id, endpoint.id);
    assert.equal((await apiError(() => svix.endpoint.get(app.id, endpoint.id), 'deleted endpoint')).code, 404);

    assert.equal((await svix.application.patch(app.id, { name: 'renamed' })).name, 'renamed');
    assert.equal((await svix.application.get(app.id)).name, 'renamed');
    await svix.application.delete(app.id);
    assert.equal((await apiError(() => svix.application.get(app.id), 'deleted app')).code, 404);
  });
});

describe('svix (node): messages and delivery', () => {
  test('message with eventType/payload/eventId/channels is delivered, signed and recorded', async () => {
    const eventType = `node.order.${uid()}`;
    await svix.eventType.create({ name: eventType, description: 'orders' });
    const { app, endpoint, path, secret } = await appWithEndpoint('deliver', { eventTypes: [eventType] });
    assert.match(endpoint.id, /^ep_/);
    assert.equal(endpoint.url, receiver.url(path));
    assert.deepEqual(endpoint.eventTypes, [eventType]);
    assert.match(secret, /^whsec_/);

    const eventId = `evt-${uid()}`;
    const payload = { order: 42, items: ['a', 'b'], nested: { ok: true }, text: 'héllo ✓' };
    const msg = await svix.message.create(app.id, { eventType, eventId, payload, channels: ['orders', 'eu'] }, { withContent: true });
    assert.match(msg.id, /^msg_/);
    assert.equal(msg.eventType, eventType);
    assert.equal(msg.eventId, eventId);
    assert.deepEqual(msg.channels, ['orders', 'eu']);
    assert.deepEqual(msg.payload, payload);

    const [req] = await receiver.wait(path, 1);
    assert.equal(req.method, 'POST');
    assert.match(req.headers['content-type'], /^application\/json/);
    assert.equal(req.headers['webhook-id'], msg.id, 'webhook-id is the message id');
    assertFreshTimestamp(req.headers['webhook-timestamp'], 'webhook');
    assert.match(req.headers['webhook-signature'], /^v1,[A-Za-z0-9+/]+={0,2}$/);
    assert.equal(req.headers['svix-id'], undefined, 'header_style "webhook" sends no svix-* headers');
    assert.equal(req.body, JSON.stringify(payload), 'the body is the payload exactly as the SDK sent it');
    assert.deepEqual(verifyBoth(secret, req), payload);
    assertRejectedByBoth(`whsec_${Buffer.alloc(32, 7).toString('base64')}`, req);

    // Read back: by id, by eventId, and the attempts by message and by endpoint.
    const byId = await svix.message.get(app.id, msg.id, { withContent: true });
    assert.deepEqual(byId.payload, payload);
    const byEventId = await svix.message.get(app.id, eventId);
    assert.equal(byEventId.id, msg.id);

    const attempts = await attemptsOf(app.id, msg.id, 1);
    assert.equal(attempts.length, 1, JSON.stringify(attempts));
    const [attempt] = attempts;
    assert.match(attempt.id, /^atmpt_/);
    assert.equal(attempt.status, SUCCESS);
    assert.equal(attempt.statusText, 'success');
    assert.equal(attempt.responseStatusCode, 200);
    assert.equal(attempt.triggerType, SCHEDULED);
    assert.equal(attempt.msgId, msg.id);
    assert.equal(attempt.endpointId, endpoint.id);
    assert.equal(attempt.url, receiver.url(path));
    assert.equal(attempt.response, 'ok');

    const byEndpoint = await svix.messageAttempt.listByEndpoint(app.id, endpoint.id);
    assert.deepEqual(byEndpoint.data.map((a) => a.id), [attempt.id]);
    assert.equal(byEndpoint.data[0].status, SUCCESS);
    assert.equal(byEndpoint.data[0].responseStatusCode, 200);

    const one = await svix.messageAttempt.get(app.id, msg.id, attempt.id);
    assert.equal(one.id, attempt.id);

    const destinations = await svix.messageAttempt.listAttemptedDestinations(app.id, msg.id);
    assert.deepEqual(destinations.data.map((d) => d.id), [endpoint.id]);
    assert.equal(destinations.data[0].statusText, 'success');
  });

  test('endpoint filters: event types and channels', async () => {
    const wanted = `node.wanted.${uid()}`;
    const other = `node.other.${uid()}`;
    await svix.eventType.create({ name: wanted, description: 'wanted' });
    await svix.eventType.create({ name: other, description: 'other' });
    const { app, path, secret } = await appWithEndpoint('filters', { eventTypes: [wanted], channels: ['orders'] });

    const skipType = await svix.message.create(app.id, { eventType: other, payload: { n: 1 }, channels: ['orders'] });
    const skipChannel = await svix.message.create(app.id, { eventType: wanted, payload: { n: 2 }, channels: ['billing'] });
    const hit = await svix.message.create(app.id, { eventType: wanted, payload: { n: 3 }, channels: ['orders', 'billing'] });

    const [req] = await receiver.wait(path, 1);
    assert.equal(req.headers['webhook-id'], hit.id);
    assert.deepEqual(verifyBoth(secret, req), { n: 3 });
    await sleep(500);
    assert.deepEqual(receiver.on(path).map((r) => r.headers['webhook-id']), [hit.id], 'only the matching message is sent');
    for (const skipped of [skipType, skipChannel]) {
      const destinations = await svix.messageAttempt.listAttemptedDestinations(app.id, skipped.id);
      assert.deepEqual(destinations.data, [], `no destination for ${skipped.id}`);
    }
    // The message list filters by channel too.
    const inOrders = await svix.message.list(app.id, { channel: 'orders' });
    assert.deepEqual(new Set(inOrders.data.map((m) => m.id)), new Set([skipType.id, hit.id]));
  });

  test('message list paginates newest first with iterator and done', async () => {
    const app = await svix.application.create({ name: 'node pages', uid: `node-pages-${uid()}` });
    const start = new Date(Date.now() - 5);
    const created = [];
    for (let i = 0; i < 5; i++) {
      created.push(await svix.message.create(app.id, { eventType: 'page.test', payload: { i } }));
    }
    assert.equal((await svix.message.list(app.id, { after: start })).data.length, 5);
    assert.deepEqual((await svix.message.list(app.id, { before: start })).data, []);
    const first = await svix.message.list(app.id, { limit: 2 });
    assert.equal(first.data.length, 2);
    assert.equal(first.done, false);
    assert.ok(first.iterator, 'a next iterator');
    assert.deepEqual(first.data[0].payload, {}, 'without withContent the payload is left out ({})');

    const pages = [];
    const all = await allPages(async (iterator) => {
      const page = await svix.message.list(app.id, { limit: 2, iterator, withContent: true });
      pages.push(page.data.length);
      return page;
    });
    assert.deepEqual(all.map((m) => m.id), created.map((m) => m.id).reverse(), 'newest first, each once');
    assert.deepEqual(all.map((m) => m.payload.i), [4, 3, 2, 1, 0]);
    assert.ok(pages.length >= 3 && pages.every((n) => n <= 2), `pages of at most 2: ${pages}`);
  });

  test('duplicate eventId is 409', async () => {
    const app = await svix.application.create({ name: 'node eventid', uid: `node-evid-${uid()}` });
    const eventId = `evt-${uid()}`;
    await svix.message.create(app.id, { eventType: 'dup.test', eventId, payload: {} });
    const err = await apiError(() => svix.message.create(app.id, { eventType: 'dup.test', eventId, payload: {} }), 'duplicate eventId');
    assert.equal(err.code, 409);
  });

  test('idempotency-key replays the first response and creates one message', async () => {
    const { app, path } = await appWithEndpoint('idem');
    const idempotencyKey = `idem-${uid()}`;
    const body = { eventType: 'idem.test', payload: { once: true } };
    const first = await svix.message.create(app.id, body, { idempotencyKey });
    const second = await svix.message.create(app.id, body, { idempotencyKey });
    assert.equal(second.id, first.id, 'the replay returns the same message');
    assert.equal(second.timestamp.getTime(), first.timestamp.getTime());

    const conflict = await apiError(
      () => svix.message.create(app.id, { eventType: 'idem.test', payload: { once: false } }, { idempotencyKey }),
      'same key, other body',
    );
    assert.equal(conflict.code, 409);

    const listed = await svix.message.list(app.id);
    assert.deepEqual(listed.data.map((m) => m.id), [first.id]);
    await receiver.wait(path, 1);
    await sleep(500);
    assert.equal(receiver.on(path).length, 1, 'one webhook');

    // Idempotent application creation too.
    const appKey = `idem-app-${uid()}`;
    const a1 = await svix.application.create({ name: 'idem app' }, { idempotencyKey: appKey });
    const a2 = await svix.application.create({ name: 'idem app' }, { idempotencyKey: appKey });
    assert.equal(a2.id, a1.id);
  });
});

describe('svix (node): secrets', () => {
  test('get and rotate: both secrets verify during the overlap', async () => {
    const { app, endpoint, path, secret: oldSecret } = await appWithEndpoint('rotate');

    await svix.message.create(app.id, { eventType: 'rotate.test', payload: { n: 1 } });
    const [beforeRotation] = await receiver.wait(path, 1);
    verifyBoth(oldSecret, beforeRotation);
    assert.equal(beforeRotation.headers['webhook-signature'].split(' ').length, 1, 'one signature before rotating');

    await svix.endpoint.rotateSecret(app.id, endpoint.id, {});
    const { key: newSecret } = await svix.endpoint.getSecret(app.id, endpoint.id);
    assert.match(newSecret, /^whsec_/);
    assert.notEqual(newSecret, oldSecret, 'rotation changes the secret');

    await svix.message.create(app.id, { eventType: 'rotate.test', payload: { n: 2 } });
    const afterRotation = (await receiver.wait(path, 2))[1];
    const signatures = afterRotation.headers['webhook-signature'].split(' ');
    assert.equal(signatures.length, 2, `new and previous secret sign: ${afterRotation.headers['webhook-signature']}`);
    assert.deepEqual(verifyBoth(newSecret, afterRotation), { n: 2 });
    assert.deepEqual(verifyBoth(oldSecret, afterRotation), { n: 2 }, 'the old secret still verifies');

    // Rotating to a given key: that key signs from now on.
    const chosen = `whsec_${Buffer.from(`node-conformance-${uid()}-key-material`).toString('base64')}`;
    await svix.endpoint.rotateSecret(app.id, endpoint.id, { key: chosen });
    assert.equal((await svix.endpoint.getSecret(app.id, endpoint.id)).key, chosen);
    await svix.message.create(app.id, { eventType: 'rotate.test', payload: { n: 3 } });
    const third = (await receiver.wait(path, 3))[2];
    for (const s of [chosen, newSecret, oldSecret]) verifyBoth(s, third);
  });

  test('rotate with gracePeriodSeconds 0: the old secret stops verifying at once', async () => {
    const { app, endpoint, path, secret: oldSecret } = await appWithEndpoint('rotate-now');
    await svix.endpoint.rotateSecret(app.id, endpoint.id, { gracePeriodSeconds: 0 });
    const { key: newSecret } = await svix.endpoint.getSecret(app.id, endpoint.id);
    assert.notEqual(newSecret, oldSecret);
    await svix.message.create(app.id, { eventType: 'rotate.test', payload: { now: true } });
    const [req] = await receiver.wait(path, 1);
    assert.equal(req.headers['webhook-signature'].split(' ').length, 1, req.headers['webhook-signature']);
    assert.deepEqual(verifyBoth(newSecret, req), { now: true });
    assertRejectedByBoth(oldSecret, req);
  });

  test('endpoint created with a given secret signs with it', async () => {
    const secret = `whsec_${Buffer.alloc(32, 0x5a).toString('base64')}`;
    const { app, path, secret: readBack } = await appWithEndpoint('given-secret', { secret });
    assert.equal(readBack, secret);
    await svix.message.create(app.id, { eventType: 'secret.test', payload: { given: true } });
    const [req] = await receiver.wait(path, 1);
    assert.deepEqual(verifyBoth(secret, req), { given: true });
  });
});

describe('svix (node): retries, 410, resend, recover', () => {
  test('500, 500, then 200: three attempts, two failed and one successful', async () => {
    const { app, endpoint, path, secret } = await appWithEndpoint('retry');
    receiver.script(path, [500, 500]);
    const msg = await svix.message.create(app.id, { eventType: 'retry.test', payload: { retry: true } });

    const reqs = await receiver.wait(path, 3, 15000);
    assert.deepEqual(reqs.map((r) => r.status), [500, 500, 200]);
    for (const r of reqs) {
      assert.equal(r.headers['webhook-id'], msg.id, 'every attempt carries the message id');
      verifyBoth(secret, r);
    }
    for (let i = 1; i < reqs.length; i++) {
      assert.ok(reqs[i].at - reqs[i - 1].at >= 800, `retry ${i} waited the schedule's 1s (${reqs[i].at - reqs[i - 1].at} ms)`);
    }
    const stamps = reqs.map((r) => Number(r.headers['webhook-timestamp']));
    assert.ok(stamps[2] > stamps[0], `each attempt is signed with its own timestamp: ${stamps}`);

    const attempts = await attemptsOf(app.id, msg.id, 3);
    assert.equal(attempts.length, 3, JSON.stringify(attempts));
    const byCode = attempts.map((a) => [a.responseStatusCode, a.status, a.statusText]).sort();
    assert.deepEqual(byCode, [[200, SUCCESS, 'success'], [500, FAIL, 'fail'], [500, FAIL, 'fail']]);
    // Newest first.
    assert.equal(attempts[0].responseStatusCode, 200);
    assert.equal(attempts[0].status, SUCCESS);
    assert.ok(attempts.every((a) => a.triggerType === SCHEDULED && a.endpointId === endpoint.id));

    const failed = await svix.messageAttempt.listByEndpoint(app.id, endpoint.id, { status: FAIL });
    assert.equal(failed.data.length, 2, `status filter: ${JSON.stringify(failed.data)}`);
    const destinations = await svix.messageAttempt.listAttemptedDestinations(app.id, msg.id);
    assert.equal(destinations.data[0].statusText, 'success');
  });

  test('410 Gone disables the endpoint', async () => {
    const { app, endpoint, path } = await appWithEndpoint('gone');
    receiver.script(path, [410]);
    const msg = await svix.message.create(app.id, { eventType: 'gone.test', payload: {} });
    await receiver.wait(path, 1);
    const disabled = await until(async () => {
      const ep = await svix.endpoint.get(app.id, endpoint.id);
      return ep.disabled ? ep : null;
    }, { what: 'endpoint disabled after 410' });
    assert.equal(disabled.disabled, true);
    const attempts = await attemptsOf(app.id, msg.id, 1);
    assert.equal(attempts[0].responseStatusCode, 410);
    assert.equal(attempts[0].status, FAIL);
    // No retry after 410.
    await sleep(1500);
    assert.equal(receiver.on(path).length, 1, 'no retry after 410');
  });

  test('resend delivers the message again as a manual attempt', async () => {
    const { app, endpoint, path, secret } = await appWithEndpoint('resend');
    const msg = await svix.message.create(app.id, { eventType: 'resend.test', payload: { again: 1 } });
    await receiver.wait(path, 1);
    await attemptsOf(app.id, msg.id, 1);

    await svix.messageAttempt.resend(app.id, msg.id, endpoint.id);
    const reqs = await receiver.wait(path, 2);
    assert.equal(reqs[1].headers['webhook-id'], msg.id, 'a resend keeps the message id');
    assert.deepEqual(verifyBoth(secret, reqs[1]), { again: 1 });

    const attempts = await attemptsOf(app.id, msg.id, 2);
    assert.deepEqual(attempts.map((a) => a.triggerType).sort(), [SCHEDULED, MANUAL]);
    assert.ok(attempts.every((a) => a.status === SUCCESS && a.responseStatusCode === 200));
  });

  test('recover redelivers failed messages', async () => {
    const { app, endpoint, path, secret } = await appWithEndpoint('recover');
    const since = new Date(Date.now() - 5000);
    // 400 is a final answer (retry_client_errors is off): each message fails at once.
    receiver.script(path, [400, 400]);
    const m1 = await svix.message.create(app.id, { eventType: 'recover.test', payload: { m: 1 } });
    await receiver.wait(path, 1);
    const m2 = await svix.message.create(app.id, { eventType: 'recover.test', payload: { m: 2 } });
    await receiver.wait(path, 2);
    for (const m of [m1, m2]) {
      const [a] = await attemptsOf(app.id, m.id, 1);
      assert.equal(a.responseStatusCode, 400);
      assert.equal(a.status, FAIL);
    }
    await until(async () => {
      const d = await svix.messageAttempt.listAttemptedDestinations(app.id, m2.id);
      return d.data[0]?.statusText === 'fail';
    }, { what: 'delivery marked failed' });

    const task = await svix.endpoint.recover(app.id, endpoint.id, { since });
    assert.match(task.id, /^qtask_/);
    assert.equal(task.task, 'endpoint.recover');
    assert.ok(['running', 'finished'].includes(task.status), task.status);

    const reqs = await receiver.wait(path, 4);
    const redelivered = reqs.slice(2);
    assert.deepEqual(new Set(redelivered.map((r) => r.headers['webhook-id'])), new Set([m1.id, m2.id]));
    for (const r of redelivered) {
      assert.equal(r.status, 200);
      verifyBoth(secret, r);
    }
    for (const m of [m1, m2]) {
      const attempts = await attemptsOf(app.id, m.id, 2);
      assert.equal(attempts[0].status, SUCCESS, `the newest attempt of ${m.id} succeeded`);
    }
  });
});

describe('svix (node): errors', () => {
  test('unknown application: ApiException 404', async () => {
    const err = await apiError(() => svix.application.get(`app_${uid()}doesnotexist`), 'get unknown app');
    assert.ok(err instanceof ApiException);
    assert.equal(err.code, 404);
    assert.equal(err.body.code, 'not_found');
    const onMsg = await apiError(() => svix.message.create(`missing-${uid()}`, { eventType: 'x', payload: {} }), 'message to unknown app');
    assert.equal(onMsg.code, 404);
    const onEndpoint = await apiError(() => svix.endpoint.list(`missing-${uid()}`), 'endpoints of unknown app');
    assert.equal(onEndpoint.code, 404);
  });

  test('validation errors: ApiException 422 with the field in loc', async () => {
    const app = await svix.application.create({ name: 'node invalid', uid: `node-invalid-${uid()}` });
    const badUrl = await apiError(() => svix.endpoint.create(app.id, { url: 'not a url' }), 'bad url');
    assert.equal(badUrl.code, 422);
    assert.ok(badUrl.body.detail.some((d) => d.loc.join('.') === 'body.url'), JSON.stringify(badUrl.body));

    const badSecret = await apiError(() => svix.endpoint.create(app.id, { url: receiver.url('/never'), secret: 'whsec_dG9vc2hvcnQ=' }), 'short secret');
    assert.equal(badSecret.code, 422);
    assert.ok(badSecret.body.detail.some((d) => d.loc.join('.') === 'body.secret'), JSON.stringify(badSecret.body));

    const notB64 = await apiError(() => svix.endpoint.create(app.id, { url: receiver.url('/never'), secret: 'whsec_%%%not-base64%%%' }), 'bad secret');
    assert.equal(notB64.code, 422);

    // Private addresses outside webhooks.allow_networks are refused (nothing is sent to them).
    const privateUrl = await apiError(() => svix.endpoint.create(app.id, { url: 'http://10.255.255.1/hook' }), 'private url');
    assert.equal(privateUrl.code, 422);
    assert.ok(privateUrl.body.detail.some((d) => d.loc.join('.') === 'body.url'), JSON.stringify(privateUrl.body));

    const noType = await apiError(() => svix.message.create(app.id, { eventType: 'bad name with spaces', payload: {} }), 'bad event type');
    assert.equal(noType.code, 422);

    const unknownType = await apiError(
      () => svix.endpoint.create(app.id, { url: receiver.url('/never'), eventTypes: [`missing.${uid()}`] }),
      'endpoint with an unknown event type',
    );
    assert.equal(unknownType.code, 422);

    const endpoints = await svix.endpoint.list(app.id);
    assert.deepEqual(endpoints.data, [], 'nothing was created');
  });

  test('wrong token: ApiException 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    const forged = signJwt({ sub: 'org_conformance', iat: now }, 'not-the-management-secret');
    const expired = signJwt({ sub: 'org_conformance', iat: now - 7200, exp: now - 3600 }, MANAGEMENT_SECRET);
    // The right secret and no exp is accepted (as by the Svix server): the two above fail for
    // their signature and their expiry alone.
    const valid = signJwt({ sub: 'org_conformance', iat: now }, MANAGEMENT_SECRET);
    await new Svix(valid, { serverUrl: HTTP }).application.list({ limit: 1 });
    for (const token of [forged, expired, 'garbage-token']) {
      const client = new Svix(token, { serverUrl: HTTP });
      const err = await apiError(() => client.application.list(), `token ${token.slice(0, 12)}`);
      assert.equal(err.code, 401);
      assert.equal(err.body.code, 'authentication_failed');
    }
  });
});

describe('svix (node): header_style = "svix"', () => {
  test('webhooks carry svix-id / svix-timestamp / svix-signature and verify', async () => {
    // run.sh always starts the second server; a missing address is a broken harness, not a skip.
    assert.ok(SVIX_HEADERS_HTTP, 'CONFORMANCE_HTTP_SVIX_HEADERS is not set (run through conformance/run.sh)');
    const client = await svixClient({ serverUrl: SVIX_HEADERS_HTTP });
    const id = uid();
    const app = await client.application.create({ name: 'node svix headers', uid: `node-svixh-${id}` });
    const path = `/svix-headers-${id}`;
    const endpoint = await client.endpoint.create(app.id, { url: receiver.url(path) });
    const { key: secret } = await client.endpoint.getSecret(app.id, endpoint.id);
    const msg = await client.message.create(app.id, { eventType: 'svix.headers', payload: { style: 'svix' } });

    const [req] = await receiver.wait(path, 1);
    assert.equal(req.headers['svix-id'], msg.id);
    assertFreshTimestamp(req.headers['svix-timestamp'], 'svix');
    assert.match(req.headers['svix-signature'], /^v1,/);
    assert.equal(req.headers['webhook-id'], undefined, 'no webhook-* headers in svix style');
    new SvixWebhook(secret).verify(req.body, req.headers);
    // standardwebhooks reads webhook-* names: the same values under those names verify.
    const mapped = {
      'webhook-id': req.headers['svix-id'],
      'webhook-timestamp': req.headers['svix-timestamp'],
      'webhook-signature': req.headers['svix-signature'],
    };
    assert.deepEqual(new StandardWebhook(secret).verify(req.body, mapped), { style: 'svix' });

    const attempts = await until(async () => {
      const page = await client.messageAttempt.listByMsg(app.id, msg.id);
      return page.data.length ? page.data : null;
    }, { what: 'attempt recorded' });
    assert.equal(attempts[0].responseStatusCode, 200);
  });
});

// docs/webhooks.md, "One log, two delivery paths".
for (const codec of CODECS) {
  describe(`svix (node) + centrifuge-js ${codec.name}: one log, two delivery paths`, () => {
    test('a message with channels is published live to apps:<app id>:<channel>', { timeout: 15000 }, async () => {
      await withSession(codec, async (s) => {
        const { app, path, secret } = await appWithEndpoint(`live-${codec.name}`);
        const c = s.client({ token: await heraldToken({ user: `u-${uid()}` }) });
        await connect(c);
        const live = `apps:${app.id}:orders`;
        const sub = c.newSubscription(live);
        const pubs = new EventQueue(sub, 'publication');
        await subscribe(sub);

        const payload = { order: 7, live: true };
        const msg = await svix.message.create(app.id, { eventType: 'order.live', payload, channels: ['orders', 'eu'] });
        const pub = await pubs.next(5000);
        assert.equal(pub.channel, live);
        assert.deepEqual(codec.decode(pub.data), payload, 'the publication data is the payload');
        assert.deepEqual(pub.tags, { event_type: 'order.live', msg_id: msg.id });

        // The same message is delivered as a webhook.
        const [req] = await receiver.wait(path, 1);
        assert.equal(req.headers['webhook-id'], msg.id);
        assert.deepEqual(verifyBoth(secret, req), payload);

        // Other channels and messages without channels are not published on this one.
        await svix.message.create(app.id, { eventType: 'order.live', payload: { n: 2 }, channels: ['billing'] });
        await svix.message.create(app.id, { eventType: 'order.live', payload: { n: 3 } });
        const m4 = await svix.message.create(app.id, { eventType: 'order.live', payload: { n: 4 }, channels: ['orders'] });
        const next = await pubs.next(5000);
        assert.deepEqual(codec.decode(next.data), { n: 4 });
        assert.equal(next.tags.msg_id, m4.id);
      });
    });
  });
}

describe('svix (node): server API publish with a webhook target', () => {
  test('publish {webhook: {app, event_type}} stores a message delivered as a webhook', async () => {
    const channel = `chat:hook-${uid()}`;
    const { app, path, secret } = await appWithEndpoint('publish-hook', { channels: [channel] });
    const eventId = `evt-${uid()}`;
    const result = await api('publish', {
      channel,
      data: { via: 'server-api' },
      webhook: { app: app.uid, event_type: 'order.published', event_id: eventId },
    });
    assert.match(result.message_id ?? '', /^msg_/, `publish result carries message_id: ${JSON.stringify(result)}`);

    const msg = await svix.message.get(app.id, result.message_id, { withContent: true });
    assert.equal(msg.eventType, 'order.published');
    assert.equal(msg.eventId, eventId);
    assert.deepEqual(msg.channels, [channel]);
    assert.deepEqual(msg.payload, { via: 'server-api' });

    const [req] = await receiver.wait(path, 1);
    assert.equal(req.headers['webhook-id'], result.message_id);
    assert.deepEqual(verifyBoth(secret, req), { via: 'server-api' });
  });
});
