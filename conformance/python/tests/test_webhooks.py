"""The official Svix Python SDK (`svix`, sync `Svix` and `SvixAsync`) against Herald's management
API (/api/v1), and the webhooks Herald sends, verified with `standardwebhooks` and the svix
SDK's `Webhook`."""

import asyncio
import base64
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from svix.api import (
    ApplicationCreateOptions,
    ApplicationIn,
    ApplicationPatch,
    EndpointHeadersIn,
    EndpointHeadersPatchIn,
    EndpointIn,
    EndpointPatch,
    EndpointSecretRotateIn,
    EventTypeIn,
    MessageAttemptListByEndpointOptions,
    MessageAttemptListByMsgOptions,
    MessageCreateOptions,
    MessageGetOptions,
    MessageIn,
    MessageListOptions,
    RecoverIn,
)
from svix.exceptions import HttpError, HTTPValidationError
from svix.models import MessageAttemptTriggerType, MessageStatus, MessageStatusText

from harness import connect, herald_token, sign_jwt, subscribe, uid
from webhook_harness import (
    MANAGEMENT_SECRET,
    SVIX_HEADERS_HTTP,
    StandardWebhook,
    SvixWebhook,
    all_pages,
    assert_rejected_by_both,
    svix_async_client,
    svix_client,
    until,
    verify_both,
)

SUCCESS = MessageStatus.SUCCESS
FAIL = MessageStatus.FAIL


def app_with_endpoint(svix, receiver, name, **endpoint_fields):
    """A fresh application with one endpoint on the receiver (path `/py-<name>-<uid>`)."""
    i = uid()
    app = svix.application.create(ApplicationIn(name=f"py {name}", uid=f"py-{name}-{i}"))
    path = f"/py-{name}-{i}"
    endpoint = svix.endpoint.create(app.id, EndpointIn(url=receiver.url(path), description=name, **endpoint_fields))
    secret = svix.endpoint.get_secret(app.id, endpoint.id).key
    return app, endpoint, path, secret


def attempts_of(svix, app_id, msg_id, n, timeout=10.0):
    """The attempts of a message (newest first) once there are at least `n`."""

    def check():
        page = svix.message_attempt.list_by_msg(app_id, msg_id, MessageAttemptListByMsgOptions(with_content=True))
        return page.data if len(page.data) >= n else None

    return until(check, timeout=timeout, what=f"{n} attempt(s) of {msg_id}")


def assert_fresh_timestamp(value):
    assert value.isdigit(), f"integer seconds: {value!r}"
    assert abs(int(value) - time.time()) < 30, f"timestamp is now: {value!r}"


# ---------------------------------------------------------------------------------------
# Applications and event types


def test_application_create_get_get_or_create(svix):
    app_uid = f"py-app-{uid()}"
    created = svix.application.create(ApplicationIn(name="py app", uid=app_uid, metadata={"team": "conformance"}))
    assert created.id.startswith("app_")
    assert created.uid == app_uid and created.name == "py app"
    assert created.metadata == {"team": "conformance"}
    assert created.created_at.tzinfo is not None

    assert svix.application.get(created.id).id == created.id
    assert svix.application.get(app_uid).id == created.id, "get by uid"

    again = svix.application.get_or_create(ApplicationIn(name="ignored", uid=app_uid))
    assert again.id == created.id and again.name == "py app", "get_if_exists returns the existing app"
    fresh = svix.application.get_or_create(ApplicationIn(name="py app 2", uid=f"py-app2-{uid()}"))
    assert fresh.id != created.id

    with pytest.raises(HttpError) as exc:
        svix.application.create(ApplicationIn(name="dup", uid=app_uid))
    assert exc.value.status_code == 409 and exc.value.code == "conflict"


def test_event_type_create_and_get(svix):
    name = f"py.created.{uid()}"
    et = svix.event_type.create(EventTypeIn(name=name, description="A python conformance event"))
    assert et.name == name and et.description == "A python conformance event"
    assert et.deprecated is False
    assert svix.event_type.get(name).name == name
    with pytest.raises(HttpError) as exc:
        svix.event_type.create(EventTypeIn(name=name, description="again"))
    assert exc.value.status_code == 409


def test_endpoint_and_application_update_headers_delete(svix, receiver):
    app, endpoint, path, secret = app_with_endpoint(
        svix, receiver, "crud", uid=f"ep-crud-{uid()}", headers={"X-Conformance": "python"}
    )
    assert svix.endpoint.get(app.id, endpoint.uid).id == endpoint.id, "get by endpoint uid"
    patched = svix.endpoint.patch(app.id, endpoint.id, EndpointPatch(description="patched", channels=["c1"]))
    assert patched.description == "patched" and patched.channels == ["c1"]
    assert patched.url == receiver.url(path), "PATCH keeps what it does not name"
    svix.endpoint.patch(app.id, endpoint.id, EndpointPatch(channels=None))
    assert svix.endpoint.get(app.id, endpoint.id).channels is None, "PATCH with null clears channels"

    assert svix.endpoint.get_headers(app.id, endpoint.id).headers == {"X-Conformance": "python"}
    svix.endpoint.set_headers(app.id, endpoint.id, EndpointHeadersIn(headers={"X-One": "1"}))
    svix.endpoint.patch_headers(app.id, endpoint.id, EndpointHeadersPatchIn(headers={"X-Two": "2"}))
    assert svix.endpoint.get_headers(app.id, endpoint.id).headers == {"X-One": "1", "X-Two": "2"}

    svix.message.create(app.id, MessageIn(event_type="crud.test", payload={"h": True}))
    (req,) = receiver.wait(path, 1)
    assert req.headers.get("x-one") == "1" and req.headers.get("x-two") == "2", req.headers
    assert verify_both(secret, req) == {"h": True}

    listed = svix.endpoint.list(app.id)
    assert [e.id for e in listed.data] == [endpoint.id] and listed.done
    svix.endpoint.delete(app.id, endpoint.id)
    with pytest.raises(HttpError) as exc:
        svix.endpoint.get(app.id, endpoint.id)
    assert exc.value.status_code == 404

    assert svix.application.patch(app.id, ApplicationPatch(name="renamed")).name == "renamed"
    assert svix.application.get(app.id).name == "renamed"
    svix.application.delete(app.id)
    with pytest.raises(HttpError) as exc:
        svix.application.get(app.id)
    assert exc.value.status_code == 404


# ---------------------------------------------------------------------------------------
# Messages and delivery


def test_message_is_delivered_signed_and_recorded(svix, receiver):
    event_type = f"py.order.{uid()}"
    svix.event_type.create(EventTypeIn(name=event_type, description="orders"))
    app, endpoint, path, secret = app_with_endpoint(svix, receiver, "deliver", event_types=[event_type])
    assert endpoint.id.startswith("ep_") and endpoint.event_types == [event_type]
    assert secret.startswith("whsec_")

    event_id = f"evt-{uid()}"
    payload = {"order": 42, "items": ["a", "b"], "nested": {"ok": True}, "text": "héllo ✓"}
    msg = svix.message.create(
        app.id,
        MessageIn(event_type=event_type, event_id=event_id, payload=payload, channels=["orders", "eu"]),
        MessageCreateOptions(with_content=True),
    )
    assert msg.id.startswith("msg_")
    assert msg.event_type == event_type and msg.event_id == event_id
    assert msg.channels == ["orders", "eu"] and msg.payload == payload

    (req,) = receiver.wait(path, 1)
    assert req.method == "POST"
    assert req.headers["content-type"].startswith("application/json")
    assert req.headers["webhook-id"] == msg.id
    assert_fresh_timestamp(req.headers["webhook-timestamp"])
    assert req.headers["webhook-signature"].startswith("v1,")
    assert "svix-id" not in req.headers
    # The body is the payload exactly as the SDK sent it (pydantic: compact, UTF-8).
    assert req.body == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert verify_both(secret, req) == payload
    assert_rejected_by_both("whsec_" + base64.b64encode(bytes([7]) * 32).decode(), req)

    assert svix.message.get(app.id, msg.id, MessageGetOptions(with_content=True)).payload == payload
    assert svix.message.get(app.id, event_id).id == msg.id, "get by eventId"

    (attempt,) = attempts_of(svix, app.id, msg.id, 1)
    assert attempt.id.startswith("atmpt_")
    assert attempt.status == SUCCESS and attempt.status_text == MessageStatusText.SUCCESS
    assert attempt.response_status_code == 200
    assert attempt.trigger_type == MessageAttemptTriggerType.SCHEDULED
    assert attempt.msg_id == msg.id and attempt.endpoint_id == endpoint.id
    assert attempt.url == receiver.url(path)
    assert attempt.response == "ok"

    by_endpoint = svix.message_attempt.list_by_endpoint(app.id, endpoint.id)
    assert [a.id for a in by_endpoint.data] == [attempt.id]
    assert by_endpoint.data[0].status == SUCCESS and by_endpoint.data[0].response_status_code == 200
    assert svix.message_attempt.get(app.id, msg.id, attempt.id).id == attempt.id
    destinations = svix.message_attempt.list_attempted_destinations(app.id, msg.id)
    assert [d.id for d in destinations.data] == [endpoint.id]
    assert destinations.data[0].status_text == MessageStatusText.SUCCESS


async def test_async_client_round_trip(receiver):
    """SvixAsync: the same flow through the async client (httpx.AsyncClient)."""
    svix = svix_async_client()
    i = uid()
    app = await svix.application.create(ApplicationIn(name="py async", uid=f"py-async-{i}"))
    path = f"/py-async-{i}"
    endpoint = await svix.endpoint.create(app.id, EndpointIn(url=receiver.url(path)))
    secret = (await svix.endpoint.get_secret(app.id, endpoint.id)).key
    msg = await svix.message.create(app.id, MessageIn(event_type="async.test", payload={"async": True}))
    (req,) = await asyncio.to_thread(receiver.wait, path, 1)
    assert req.headers["webhook-id"] == msg.id
    assert verify_both(secret, req) == {"async": True}
    for _ in range(100):
        page = await svix.message_attempt.list_by_msg(app.id, msg.id)
        if page.data:
            break
        await asyncio.sleep(0.1)
    assert page.data and page.data[0].status == SUCCESS and page.data[0].response_status_code == 200
    with pytest.raises(HttpError) as exc:
        await svix.application.get(f"missing-{uid()}")
    assert exc.value.status_code == 404


def test_endpoint_filters_event_types_and_channels(svix, receiver):
    wanted, other = f"py.wanted.{uid()}", f"py.other.{uid()}"
    svix.event_type.create(EventTypeIn(name=wanted, description="wanted"))
    svix.event_type.create(EventTypeIn(name=other, description="other"))
    app, _, path, secret = app_with_endpoint(svix, receiver, "filters", event_types=[wanted], channels=["orders"])

    skip_type = svix.message.create(app.id, MessageIn(event_type=other, payload={"n": 1}, channels=["orders"]))
    skip_channel = svix.message.create(app.id, MessageIn(event_type=wanted, payload={"n": 2}, channels=["billing"]))
    hit = svix.message.create(app.id, MessageIn(event_type=wanted, payload={"n": 3}, channels=["orders", "billing"]))

    (req,) = receiver.wait(path, 1)
    assert req.headers["webhook-id"] == hit.id
    assert verify_both(secret, req) == {"n": 3}
    time.sleep(0.5)
    assert [r.headers["webhook-id"] for r in receiver.on(path)] == [hit.id], "only the matching message is sent"
    for skipped in (skip_type, skip_channel):
        assert svix.message_attempt.list_attempted_destinations(app.id, skipped.id).data == []
    in_orders = svix.message.list(app.id, MessageListOptions(channel="orders"))
    assert {m.id for m in in_orders.data} == {skip_type.id, hit.id}


def test_message_list_pagination(svix):
    app = svix.application.create(ApplicationIn(name="py pages", uid=f"py-pages-{uid()}"))
    start = datetime.now(timezone.utc) - timedelta(milliseconds=5)
    created = [svix.message.create(app.id, MessageIn(event_type="page.test", payload={"i": i})) for i in range(5)]

    assert len(svix.message.list(app.id, MessageListOptions(after=start)).data) == 5
    assert svix.message.list(app.id, MessageListOptions(before=start)).data == []
    first = svix.message.list(app.id, MessageListOptions(limit=2))
    assert len(first.data) == 2 and first.done is False and first.iterator
    assert first.data[0].payload == {}, "without with_content the payload is left out"

    sizes = []

    def page(iterator):
        out = svix.message.list(app.id, MessageListOptions(limit=2, iterator=iterator, with_content=True))
        sizes.append(len(out.data))
        return out

    everything = all_pages(page)
    assert [m.id for m in everything] == [m.id for m in reversed(created)], "newest first, each once"
    assert [m.payload["i"] for m in everything] == [4, 3, 2, 1, 0]
    assert len(sizes) >= 3 and all(n <= 2 for n in sizes), sizes


def test_duplicate_event_id_is_409(svix):
    app = svix.application.create(ApplicationIn(name="py eventid", uid=f"py-evid-{uid()}"))
    event_id = f"evt-{uid()}"
    svix.message.create(app.id, MessageIn(event_type="dup.test", event_id=event_id, payload={}))
    with pytest.raises(HttpError) as exc:
        svix.message.create(app.id, MessageIn(event_type="dup.test", event_id=event_id, payload={}))
    assert exc.value.status_code == 409


def test_idempotency_key_replay(svix, receiver):
    app, _, path, _ = app_with_endpoint(svix, receiver, "idem")
    key = f"idem-{uid()}"
    body = MessageIn(event_type="idem.test", payload={"once": True})
    first = svix.message.create(app.id, body, MessageCreateOptions(idempotency_key=key))
    second = svix.message.create(app.id, body, MessageCreateOptions(idempotency_key=key))
    assert second.id == first.id and second.timestamp == first.timestamp, "the replay returns the first response"

    with pytest.raises(HttpError) as exc:
        svix.message.create(
            app.id, MessageIn(event_type="idem.test", payload={"once": False}), MessageCreateOptions(idempotency_key=key)
        )
    assert exc.value.status_code == 409, "same key, different request"

    assert [m.id for m in svix.message.list(app.id).data] == [first.id]
    receiver.wait(path, 1)
    time.sleep(0.5)
    assert len(receiver.on(path)) == 1, "one webhook"

    app_key = f"idem-app-{uid()}"
    a1 = svix.application.create(ApplicationIn(name="idem app"), ApplicationCreateOptions(idempotency_key=app_key))
    a2 = svix.application.create(ApplicationIn(name="idem app"), ApplicationCreateOptions(idempotency_key=app_key))
    assert a1.id == a2.id


# ---------------------------------------------------------------------------------------
# Secrets


def rotate(svix, app_id, endpoint_id, rotate_in):
    """`endpoint.rotate_secret`, tolerating only an empty response body: svix 2.9.1 parses the
    body as EndpointSecretOut, which test_rotate_secret_returns_the_new_secret checks on its own,
    so that this test still checks the signatures."""
    try:
        svix.endpoint.rotate_secret(app_id, endpoint_id, rotate_in)
    except json.JSONDecodeError as e:
        assert e.doc == "", f"rotate_secret answered a body that is not JSON: {e.doc!r}"


def test_rotate_secret_returns_the_new_secret(svix, receiver):
    # svix 2.9.1: `rotate_secret` returns `EndpointSecretOut.model_validate(response.json())`.
    app, endpoint, _, old_secret = app_with_endpoint(svix, receiver, "rotate-out")
    rotated = svix.endpoint.rotate_secret(app.id, endpoint.id, EndpointSecretRotateIn())
    assert rotated.key.startswith("whsec_") and rotated.key != old_secret
    assert rotated.key == svix.endpoint.get_secret(app.id, endpoint.id).key


def test_secret_rotation_both_secrets_verify(svix, receiver):
    app, endpoint, path, old_secret = app_with_endpoint(svix, receiver, "rotate")
    svix.message.create(app.id, MessageIn(event_type="rotate.test", payload={"n": 1}))
    (before,) = receiver.wait(path, 1)
    verify_both(old_secret, before)
    assert len(before.headers["webhook-signature"].split(" ")) == 1

    rotate(svix, app.id, endpoint.id, EndpointSecretRotateIn())
    new_secret = svix.endpoint.get_secret(app.id, endpoint.id).key
    assert new_secret.startswith("whsec_") and new_secret != old_secret

    svix.message.create(app.id, MessageIn(event_type="rotate.test", payload={"n": 2}))
    after = receiver.wait(path, 2)[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 2, after.headers["webhook-signature"]
    assert verify_both(new_secret, after) == {"n": 2}
    assert verify_both(old_secret, after) == {"n": 2}, "the old secret still verifies during the overlap"

    chosen = "whsec_" + base64.b64encode(f"py-conformance-{uid()}-key-material".encode()).decode()
    rotate(svix, app.id, endpoint.id, EndpointSecretRotateIn(key=chosen))
    assert svix.endpoint.get_secret(app.id, endpoint.id).key == chosen
    svix.message.create(app.id, MessageIn(event_type="rotate.test", payload={"n": 3}))
    third = receiver.wait(path, 3)[2]
    for s in (chosen, new_secret, old_secret):
        verify_both(s, third)


def test_rotate_with_zero_grace_period(svix, receiver):
    app, endpoint, path, old_secret = app_with_endpoint(svix, receiver, "rotate-now")
    rotate(svix, app.id, endpoint.id, EndpointSecretRotateIn(grace_period_seconds=0))
    new_secret = svix.endpoint.get_secret(app.id, endpoint.id).key
    assert new_secret != old_secret
    svix.message.create(app.id, MessageIn(event_type="rotate.test", payload={"now": True}))
    (req,) = receiver.wait(path, 1)
    assert len(req.headers["webhook-signature"].split(" ")) == 1, req.headers["webhook-signature"]
    assert verify_both(new_secret, req) == {"now": True}
    assert_rejected_by_both(old_secret, req)


def test_endpoint_with_given_secret(svix, receiver):
    secret = "whsec_" + base64.b64encode(bytes([0x5A]) * 32).decode()
    app, _, path, read_back = app_with_endpoint(svix, receiver, "given-secret", secret=secret)
    assert read_back == secret
    svix.message.create(app.id, MessageIn(event_type="secret.test", payload={"given": True}))
    (req,) = receiver.wait(path, 1)
    assert verify_both(secret, req) == {"given": True}


# ---------------------------------------------------------------------------------------
# Retries, 410, resend, recover


def test_retry_500_500_200(svix, receiver):
    app, endpoint, path, secret = app_with_endpoint(svix, receiver, "retry")
    receiver.script(path, [500, 500])
    msg = svix.message.create(app.id, MessageIn(event_type="retry.test", payload={"retry": True}))

    reqs = receiver.wait(path, 3, timeout=15)
    assert [r.status for r in reqs] == [500, 500, 200]
    for r in reqs:
        assert r.headers["webhook-id"] == msg.id
        verify_both(secret, r)
    for a, b in zip(reqs, reqs[1:]):
        assert b.at - a.at >= 0.8, f"retry waited the schedule's 1s ({b.at - a.at:.3f}s)"
    stamps = [int(r.headers["webhook-timestamp"]) for r in reqs]
    assert stamps[2] > stamps[0], f"each attempt is signed with its own timestamp: {stamps}"

    attempts = attempts_of(svix, app.id, msg.id, 3)
    assert len(attempts) == 3, attempts
    assert sorted((a.response_status_code, int(a.status)) for a in attempts) == [(200, 0), (500, 2), (500, 2)]
    assert attempts[0].response_status_code == 200 and attempts[0].status == SUCCESS, "newest first"
    assert all(a.trigger_type == MessageAttemptTriggerType.SCHEDULED for a in attempts)
    failed = svix.message_attempt.list_by_endpoint(app.id, endpoint.id, MessageAttemptListByEndpointOptions(status=FAIL))
    assert len(failed.data) == 2, failed.data


def test_410_disables_endpoint(svix, receiver):
    app, endpoint, path, _ = app_with_endpoint(svix, receiver, "gone")
    receiver.script(path, [410])
    msg = svix.message.create(app.id, MessageIn(event_type="gone.test", payload={}))
    receiver.wait(path, 1)
    ep = until(
        lambda: (lambda e: e if e.disabled else None)(svix.endpoint.get(app.id, endpoint.id)),
        what="endpoint disabled after 410",
    )
    assert ep.disabled is True
    (attempt,) = attempts_of(svix, app.id, msg.id, 1)
    assert attempt.response_status_code == 410 and attempt.status == FAIL
    time.sleep(1.5)
    assert len(receiver.on(path)) == 1, "no retry after 410"


def test_resend(svix, receiver):
    app, endpoint, path, secret = app_with_endpoint(svix, receiver, "resend")
    msg = svix.message.create(app.id, MessageIn(event_type="resend.test", payload={"again": 1}))
    receiver.wait(path, 1)
    attempts_of(svix, app.id, msg.id, 1)
    svix.message_attempt.resend(app.id, msg.id, endpoint.id)
    reqs = receiver.wait(path, 2)
    assert reqs[1].headers["webhook-id"] == msg.id
    assert verify_both(secret, reqs[1]) == {"again": 1}
    attempts = attempts_of(svix, app.id, msg.id, 2)
    assert sorted(int(a.trigger_type) for a in attempts) == [0, 1], "one scheduled, one manual"
    assert all(a.status == SUCCESS and a.response_status_code == 200 for a in attempts)


def test_recover(svix, receiver):
    app, endpoint, path, secret = app_with_endpoint(svix, receiver, "recover")
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    receiver.script(path, [400, 400])  # final answers: each message fails at once
    m1 = svix.message.create(app.id, MessageIn(event_type="recover.test", payload={"m": 1}))
    receiver.wait(path, 1)
    m2 = svix.message.create(app.id, MessageIn(event_type="recover.test", payload={"m": 2}))
    receiver.wait(path, 2)
    for m in (m1, m2):
        (a,) = attempts_of(svix, app.id, m.id, 1)
        assert a.response_status_code == 400 and a.status == FAIL
    until(
        lambda: svix.message_attempt.list_attempted_destinations(app.id, m2.id).data[0].status_text
        == MessageStatusText.FAIL,
        what="delivery marked failed",
    )

    task = svix.endpoint.recover(app.id, endpoint.id, RecoverIn(since=since))
    assert task.id.startswith("qtask_") and task.task == "endpoint.recover"
    assert task.status in ("running", "finished")

    redelivered = receiver.wait(path, 4)[2:]
    assert {r.headers["webhook-id"] for r in redelivered} == {m1.id, m2.id}
    for r in redelivered:
        assert r.status == 200
        verify_both(secret, r)
    for m in (m1, m2):
        assert attempts_of(svix, app.id, m.id, 2)[0].status == SUCCESS


# ---------------------------------------------------------------------------------------
# Errors


def test_unknown_application_is_404(svix):
    for call in (
        lambda: svix.application.get(f"app_{uid()}doesnotexist"),
        lambda: svix.message.create(f"missing-{uid()}", MessageIn(event_type="x", payload={})),
        lambda: svix.endpoint.list(f"missing-{uid()}"),
    ):
        with pytest.raises(HttpError) as exc:
            call()
        assert exc.value.status_code == 404 and exc.value.code == "not_found", exc.value


def test_validation_errors_are_422(svix, receiver):
    app = svix.application.create(ApplicationIn(name="py invalid", uid=f"py-invalid-{uid()}"))

    def refused(endpoint_in, field):
        with pytest.raises(HTTPValidationError) as exc:
            svix.endpoint.create(app.id, endpoint_in)
        assert exc.value.status_code == 422
        if field:
            assert any(d.loc == ["body", field] for d in exc.value.detail), exc.value.detail

    refused(EndpointIn(url="not a url"), "url")
    refused(EndpointIn(url=receiver.url("/never"), secret="whsec_dG9vc2hvcnQ="), "secret")
    refused(EndpointIn(url=receiver.url("/never"), secret="whsec_%%%not-base64%%%"), "secret")
    # Private addresses outside webhooks.allow_networks are refused (nothing is sent to them).
    refused(EndpointIn(url="http://10.255.255.1/hook"), "url")
    refused(EndpointIn(url=receiver.url("/never"), event_types=[f"missing.{uid()}"]), None)
    with pytest.raises(HTTPValidationError):
        svix.message.create(app.id, MessageIn(event_type="bad name with spaces", payload={}))
    assert svix.endpoint.list(app.id).data == [], "nothing was created"


def test_endpoint_with_an_unresolvable_public_name_is_created(svix):
    """As Svix: a host name is not resolved at creation (the svix kitchen-sink test creates
    https://example.svix.com/); deliveries check the addresses when they connect. What is
    non-public by its form alone is still refused."""
    app = svix.application.create(ApplicationIn(name="py names", uid=f"py-names-{uid()}"))
    for url in ["https://example.svix.com/", f"https://hooks-{uid()}.no-such-domain-herald.com/in"]:
        endpoint = svix.endpoint.create(app.id, EndpointIn(url=url, description="name only"))
        assert endpoint.url == url
        assert endpoint.id.startswith("ep_")
    for url in ["http://metadata.google.internal/computeMetadata/v1/", "http://intranet/hook", "http://printer.local/"]:
        with pytest.raises(HTTPValidationError) as exc:
            svix.endpoint.create(app.id, EndpointIn(url=url))
        assert exc.value.status_code == 422
        assert any(d.loc == ["body", "url"] for d in exc.value.detail), exc.value.detail
    assert len(svix.endpoint.list(app.id).data) == 2


def test_wrong_token_is_401():
    now = int(time.time())
    forged = sign_jwt({"sub": "org_conformance", "iat": now}, "not-the-management-secret")
    expired = sign_jwt({"sub": "org_conformance", "iat": now - 7200, "exp": now - 3600}, MANAGEMENT_SECRET)
    # The right secret and no exp is accepted: the two above fail for signature and expiry alone.
    svix_client(token=sign_jwt({"sub": "org_conformance", "iat": now}, MANAGEMENT_SECRET)).application.list()
    for token in (forged, expired, "garbage-token"):
        client = svix_client(token=token)
        with pytest.raises(HttpError) as exc:
            client.application.list()
        assert exc.value.status_code == 401 and exc.value.code == "authentication_failed"


# ---------------------------------------------------------------------------------------
# header_style = "svix"


def test_svix_header_style(receiver):
    # run.sh always starts the second server; a missing address is a broken harness, not a skip.
    assert SVIX_HEADERS_HTTP, "CONFORMANCE_HTTP_SVIX_HEADERS is not set (run through conformance/run.sh)"
    svix = svix_client(SVIX_HEADERS_HTTP)
    i = uid()
    app = svix.application.create(ApplicationIn(name="py svix headers", uid=f"py-svixh-{i}"))
    path = f"/py-svix-headers-{i}"
    endpoint = svix.endpoint.create(app.id, EndpointIn(url=receiver.url(path)))
    secret = svix.endpoint.get_secret(app.id, endpoint.id).key
    msg = svix.message.create(app.id, MessageIn(event_type="svix.headers", payload={"style": "svix"}))

    (req,) = receiver.wait(path, 1)
    assert req.headers["svix-id"] == msg.id
    assert_fresh_timestamp(req.headers["svix-timestamp"])
    assert req.headers["svix-signature"].startswith("v1,")
    assert "webhook-id" not in req.headers
    SvixWebhook(secret).verify(req.body, req.headers)
    mapped = {
        "webhook-id": req.headers["svix-id"],
        "webhook-timestamp": req.headers["svix-timestamp"],
        "webhook-signature": req.headers["svix-signature"],
    }
    assert StandardWebhook(secret).verify(req.body, mapped) == {"style": "svix"}
    attempts = until(lambda: svix.message_attempt.list_by_msg(app.id, msg.id).data, what="attempt recorded")
    assert attempts[0].response_status_code == 200


# ---------------------------------------------------------------------------------------
# One log, two delivery paths (docs/webhooks.md): a message with channels is also published
# live to apps:<app id>:<channel>.


async def test_message_with_channels_is_published_live(make_client, codec, receiver):
    svix = svix_async_client()
    i = uid()
    app = await svix.application.create(ApplicationIn(name=f"py live {codec.name}", uid=f"py-live-{i}"))
    path = f"/py-live-{i}"
    endpoint = await svix.endpoint.create(app.id, EndpointIn(url=receiver.url(path)))
    secret = (await svix.endpoint.get_secret(app.id, endpoint.id)).key

    client = make_client(token=await herald_token(f"u-{uid()}"))
    await connect(client)
    live = f"apps:{app.id}:orders"
    sub, _ = await subscribe(client, live)

    payload = {"order": 7, "live": True}
    msg = await svix.message.create(
        app.id, MessageIn(event_type="order.live", payload=payload, channels=["orders", "eu"])
    )
    ctx = await sub.rec.next("publication")
    assert codec.decode(ctx.pub.data) == payload, "the publication data is the payload"
    assert ctx.pub.tags == {"event_type": "order.live", "msg_id": msg.id}, ctx.pub

    (req,) = await asyncio.to_thread(receiver.wait, path, 1)
    assert req.headers["webhook-id"] == msg.id
    assert verify_both(secret, req) == payload

    await svix.message.create(app.id, MessageIn(event_type="order.live", payload={"n": 2}, channels=["billing"]))
    await svix.message.create(app.id, MessageIn(event_type="order.live", payload={"n": 3}))
    m4 = await svix.message.create(app.id, MessageIn(event_type="order.live", payload={"n": 4}, channels=["orders"]))
    nxt = await sub.rec.next("publication")
    assert codec.decode(nxt.pub.data) == {"n": 4}, "other channels and channel-less messages are not published here"
    assert nxt.pub.tags["msg_id"] == m4.id
