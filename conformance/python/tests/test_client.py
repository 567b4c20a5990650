"""centrifuge-python against Herald, in JSON and protobuf mode (the `codec` fixture)."""

import asyncio
import logging
import time

from cent import (
    Disconnect,
    DisconnectRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PublishRequest,
    RefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
)
from centrifuge import (
    ClientState,
    DeltaType,
    ReplyError,
    StreamPosition,
    SubscriptionState,
)

from harness import (
    SECRET,
    SubRecorder,
    connect,
    first_of,
    herald_token,
    now,
    sign_jwt,
    subscribe,
    uid,
)


# ---------------------------------------------------------------------------------------
# Connection


async def test_connect_with_jwt(make_client, api):
    user = f"u-{uid()}"
    client = make_client(token=await herald_token(user))
    ctx = await connect(client)
    assert isinstance(ctx.client, str) and ctx.client, f"connected context must carry the client id: {ctx!r}"
    assert client.state == ClientState.CONNECTED
    info = await api.info(InfoRequest())
    assert sum(node.num_clients for node in info.nodes) >= 1


def _disconnect_pushes(caplog):
    """centrifuge-python logs "disconnect push received" for every disconnect push it handles."""
    return [r for r in caplog.records if r.name.startswith("centrifuge") and "disconnect push" in r.getMessage()]


async def test_bad_token_disconnects_with_3500_without_reconnect(make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="centrifuge")
    token = sign_jwt({"sub": f"u-{uid()}", "exp": now() + 3600}, SECRET + "-wrong")
    client = make_client(token=token, min_reconnect_delay=0.1, max_reconnect_delay=0.2)
    await client.connect()
    ctx = await client.rec.next("disconnected", 5)
    assert ctx.code == 3500, f"disconnect code for an invalid token: {ctx!r}"
    await asyncio.sleep(1.0)
    assert client.state == ClientState.DISCONNECTED
    assert client.rec.of("connected") == []
    assert len(client.rec.of("connecting")) == 1, f"only the initial connecting: {client.rec.summary()}"
    # As Centrifugo: over a bidirectional WebSocket the close frame alone carries the code.
    assert _disconnect_pushes(caplog) == [], "no disconnect push before the close frame"


async def test_server_disconnect_travels_in_the_close_frame(make_client, api, caplog):
    caplog.set_level(logging.DEBUG, logger="centrifuge")
    user = f"u-{uid()}"
    client = make_client(token=await herald_token(user), min_reconnect_delay=0.1, max_reconnect_delay=0.2)
    await connect(client)
    await api.disconnect(DisconnectRequest(user=user, disconnect=Disconnect(code=4501, reason="moved away")))
    ctx = await client.rec.next("disconnected", 5)
    assert (ctx.code, ctx.reason) == (4501, "moved away"), f"code and reason of the close frame: {ctx!r}"
    await asyncio.sleep(0.5)
    assert client.state == ClientState.DISCONNECTED
    assert len(client.rec.of("connected")) == 1, f"no reconnect after 4501: {client.rec.summary()}"
    assert _disconnect_pushes(caplog) == [], "no disconnect push before the close frame"


async def test_pings_are_answered_and_connection_stays(make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="centrifuge")
    client = make_client(token=await herald_token(f"u-{uid()}"), max_server_ping_delay=4.0)
    await connect(client)
    start = len(client.rec.events)
    await asyncio.sleep(7.5)  # herald.toml: ping_interval 3s
    assert client.state == ClientState.CONNECTED
    later = [(n, c) for (n, c, _) in client.rec.events[start:]]
    assert later == [], f"no reconnect/disconnect/error while idle: {later!r}"
    pings = [r for r in caplog.records if r.getMessage() == "received ping from server"]
    pongs = [r for r in caplog.records if r.getMessage() == "respond with pong"]
    assert len(pings) >= 2, f"expected >= 2 server pings in 7.5s, got {len(pings)}"
    assert len(pongs) >= 2, f"expected pongs (connect reply must carry pong: true), got {len(pongs)}"


# ---------------------------------------------------------------------------------------
# Publications


async def test_receives_api_publications_in_order(make_client, api, codec):
    channel = f"chat:room-{uid()}"
    client = make_client(token=await herald_token(f"u-{uid()}"))
    await connect(client)
    sub, ctx = await subscribe(client, channel)
    assert ctx.channel == channel
    sent, offsets = [], []
    for i in range(1, 4):
        data = {"text": f"hello {i}", "n": i, "nested": {"ok": True, "list": [1, "two", None]}}
        sent.append(data)
        res = await api.publish(PublishRequest(channel=channel, data=data))
        assert res.epoch, f"publish result epoch: {res!r}"
        offsets.append(res.offset)
    assert offsets[0] == 1
    got = await sub.rec.take("publication", 3)
    assert [codec.decode(p.pub.data) for p in got] == sent
    assert [p.pub.offset for p in got] == offsets
    assert offsets == [offsets[0], offsets[0] + 1, offsets[0] + 2]
    assert all(p.pub.info is None for p in got), "server API publications carry no client info"

    await api.publish(PublishRequest(channel=channel, data={"tagged": True}, tags={"kind": "greeting"}))
    tagged = await sub.rec.next("publication")
    assert codec.decode(tagged.pub.data) == {"tagged": True}
    assert tagged.pub.tags == {"kind": "greeting"}, f"tags from the server API reach the client: {tagged!r}"


async def test_client_publish(make_client, codec):
    channel = f"chat:room-{uid()}"
    user = f"u-{uid()}"
    client = make_client(token=await herald_token(user))
    connected = await connect(client)
    sub, _ = await subscribe(client, channel)
    data = {"text": "from the client", "n": 42}
    await sub.publish(codec.encode(data))
    ctx = await sub.rec.next("publication")
    assert codec.decode(ctx.pub.data) == data
    assert ctx.pub.info is not None, "client publications carry the publisher's info"
    assert ctx.pub.info.user == user
    assert ctx.pub.info.client == connected.client
    assert ctx.pub.offset >= 1


async def test_publish_without_subscription_is_refused(make_client, codec):
    client = make_client(token=await herald_token(f"u-{uid()}"))
    await connect(client)
    try:
        await client.publish(f"chat:room-{uid()}", codec.encode({"x": 1}))
    except ReplyError as e:
        assert e.code == 103, f"permission denied expected: {e!r}"
    else:
        raise AssertionError("publish to a channel the client is not subscribed to must be refused")
    assert client.state == ClientState.CONNECTED


# ---------------------------------------------------------------------------------------
# Presence and join/leave


async def test_presence_and_stats(make_client, api, codec):
    channel = f"chat:room-{uid()}"
    user_a, user_b = f"a-{uid()}", f"b-{uid()}"
    a = make_client(token=await herald_token(user_a, info={"name": "Alice"}))
    b = make_client(token=await herald_token(user_b))
    id_a = (await connect(a)).client
    id_b = (await connect(b)).client
    sub_a, _ = await subscribe(a, channel)
    sub_b, _ = await subscribe(b, channel)

    presence = await sub_a.presence()
    assert presence.clients[id_a].conn_info is not None, f"conn_info from the info claim: {presence!r}"
    assert codec.decode(presence.clients[id_a].conn_info) == {"name": "Alice"}
    assert sorted(presence.clients) == sorted([id_a, id_b]), f"presence: {presence!r}"
    assert presence.clients[id_a].user == user_a
    assert presence.clients[id_b].user == user_b
    assert presence.clients[id_b].client == id_b

    stats = await sub_b.presence_stats()
    assert (stats.num_clients, stats.num_users) == (2, 2)
    stats = await a.presence_stats(channel)
    assert (stats.num_clients, stats.num_users) == (2, 2)

    api_presence = await api.presence(PresenceRequest(channel=channel))
    assert sorted(api_presence.presence) == sorted([id_a, id_b])

    await sub_b.unsubscribe()
    for _ in range(20):
        stats = await sub_a.presence_stats()
        if stats.num_clients == 1:
            break
        await asyncio.sleep(0.1)
    assert (stats.num_clients, stats.num_users) == (1, 1)


async def test_join_and_leave(make_client):
    channel = f"chat:room-{uid()}"
    user_b = f"b-{uid()}"
    a = make_client(token=await herald_token(f"a-{uid()}"))
    await connect(a)
    sub_a, _ = await subscribe(a, channel)
    b = make_client(token=await herald_token(user_b))
    id_b = (await connect(b)).client
    sub_b, _ = await subscribe(b, channel)

    join = await sub_a.rec.wait("join", lambda j: j.info.client == id_b)
    assert join.info.user == user_b
    await sub_b.unsubscribe()
    leave = await sub_a.rec.wait("leave", lambda x: x.info.client == id_b)
    assert leave.info.user == user_b

    # A disconnecting subscriber leaves as well.
    await sub_b.subscribe()
    await sub_a.rec.wait("join", lambda j: j.info.client == id_b)
    await b.disconnect()
    await sub_a.rec.wait("leave", lambda x: x.info.client == id_b)


# ---------------------------------------------------------------------------------------
# History


async def test_history(make_client, api, codec):
    channel = f"chat:room-{uid()}"
    client = make_client(token=await herald_token(f"u-{uid()}"))
    await connect(client)
    sub, _ = await subscribe(client, channel)
    epoch = ""
    for i in range(1, 6):
        epoch = (await api.publish(PublishRequest(channel=channel, data={"n": i}))).epoch

    res = await sub.history(limit=10)
    assert [codec.decode(p.data) for p in res.publications] == [{"n": i} for i in range(1, 6)]
    assert [p.offset for p in res.publications] == [1, 2, 3, 4, 5]
    assert (res.offset, res.epoch) == (5, epoch)

    res = await sub.history(limit=2)
    assert [p.offset for p in res.publications] == [1, 2], "limit 2 returns the oldest two"

    res = await sub.history(limit=2, reverse=True)
    assert [p.offset for p in res.publications] == [5, 4], "reverse limit 2 returns the newest two"
    assert [codec.decode(p.data) for p in res.publications] == [{"n": 5}, {"n": 4}]

    res = await sub.history(limit=10, since=StreamPosition(offset=3, epoch=epoch))
    assert [p.offset for p in res.publications] == [4, 5]

    res = await sub.history()
    assert res.publications == [] and res.offset == 5 and res.epoch == epoch

    res = await client.history(channel, limit=1, reverse=True)
    assert [codec.decode(p.data) for p in res.publications] == [{"n": 5}]

    # cent sees the same history.
    api_hist = await api.history(HistoryRequest(channel=channel, limit=10))
    assert [p.data for p in api_hist.publications] == [{"n": i} for i in range(1, 6)]
    assert (api_hist.offset, api_hist.epoch) == (5, epoch)
    api_rev = await api.history(HistoryRequest(channel=channel, limit=2, reverse=True))
    assert [p.offset for p in api_rev.publications] == [5, 4]


# ---------------------------------------------------------------------------------------
# Recovery


async def test_recovery_after_server_disconnect(make_client, api, codec):
    channel = f"chat:room-{uid()}"
    user = f"u-{uid()}"
    client = make_client(
        token=await herald_token(user), min_reconnect_delay=1.5, max_reconnect_delay=1.5
    )
    first_id = (await connect(client)).client
    sub, first = await subscribe(client, channel, recoverable=True)
    assert first.recoverable is True, f"subscribe reply must grant recovery: {first!r}"
    assert first.stream_position is not None and first.stream_position.epoch

    for i in (1, 2):
        await api.publish(PublishRequest(channel=channel, data={"n": i}))
    live = await sub.rec.take("publication", 2)
    assert [codec.decode(p.pub.data) for p in live] == [{"n": 1}, {"n": 2}]
    last = live[-1].pub.offset

    start = len(client.rec.events)
    await api.disconnect(
        DisconnectRequest(user=user, disconnect=Disconnect(code=4000, reason="conformance reconnect"))
    )
    name, ctx = await first_of(client.rec, ["connecting", "disconnected"], 5, start)
    assert name == "connecting" and ctx.code == 4000, f"reconnecting disconnect expected: {name} {ctx!r}"

    missed = []
    for i in (3, 4, 5):
        missed.append((await api.publish(PublishRequest(channel=channel, data={"n": i}))).offset)
    assert client.state == ClientState.CONNECTING, "client must still be away while we published"

    name, again_conn = await first_of(client.rec, ["connected", "disconnected"], 6, start)
    assert name == "connected", f"reconnect expected: {again_conn!r}"
    assert again_conn.client != first_id, "a new connection has a new client id"
    # The first subscribed event was consumed by subscribe(): the next one is the resubscribe.
    subscribed = [c for c in sub.rec.of("subscribed")]
    deadline = time.monotonic() + 6
    while len(subscribed) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        subscribed = sub.rec.of("subscribed")
    assert len(subscribed) >= 2, f"no resubscribe: {sub.rec.summary()}"
    again = subscribed[1]
    assert again.was_recovering is True, f"resubscribe must try recovery: {again!r}"
    assert again.recovered is True, f"resubscribe must recover: {again!r}"

    recovered = await sub.rec.take("publication", 3)
    assert [codec.decode(p.pub.data) for p in recovered] == [{"n": 3}, {"n": 4}, {"n": 5}]
    assert [p.pub.offset for p in recovered] == [last + 1, last + 2, last + 3] == missed

    await api.publish(PublishRequest(channel=channel, data={"n": 6}))
    nxt = await sub.rec.next("publication")
    assert codec.decode(nxt.pub.data) == {"n": 6}, "no duplicate after the recovered ones"
    assert nxt.pub.offset == last + 4


# ---------------------------------------------------------------------------------------
# Tokens


async def test_expiring_token_refreshed_with_get_token(make_client, api, codec):
    user = f"u-{uid()}"
    calls = []

    async def get_token():
        calls.append(time.monotonic())
        return await herald_token(user, ttl="1h")

    client = make_client(token=await herald_token(user, ttl="2s"), get_token=get_token)
    t0 = time.monotonic()
    await connect(client)
    start = len(client.rec.events)
    channel = f"chat:room-{uid()}"
    sub, _ = await subscribe(client, channel)

    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert calls, "get_token never called: connect reply must carry expires: true and ttl"
    # Past the original expiry plus expired_close_delay (1s): still the same connection.
    await asyncio.sleep(max(0.0, t0 + 4.5 - time.monotonic()))
    assert client.state == ClientState.CONNECTED
    later = [(n, c) for (n, c, _) in client.rec.events[start:]]
    assert later == [], f"no reconnect/disconnect/error around the refresh: {later!r}"
    assert len(calls) == 1

    await api.publish(PublishRequest(channel=channel, data={"after": "refresh"}))
    assert codec.decode((await sub.rec.next("publication")).pub.data) == {"after": "refresh"}


async def test_expired_token_at_connect_uses_get_token(make_client):
    user = f"u-{uid()}"
    calls = 0

    async def get_token():
        nonlocal calls
        calls += 1
        return await herald_token(user, ttl="1h")

    expired = sign_jwt({"sub": user, "iat": now() - 120, "exp": now() - 60})
    client = make_client(token=expired, get_token=get_token, min_reconnect_delay=0.1, max_reconnect_delay=0.3)
    await connect(client, timeout=8)
    assert calls == 1
    errors = client.rec.of("error")
    assert errors and isinstance(errors[0].error, ReplyError) and errors[0].error.code == 109, (
        f"token expired (109) error expected first: {errors!r}"
    )


async def test_secret_namespace_needs_subscription_token(make_client, api, codec):
    user = f"u-{uid()}"
    channel = f"secret:{uid()}"
    client = make_client(token=await herald_token(user))
    await connect(client)

    rec = SubRecorder()
    denied = client.new_subscription(channel, events=rec)
    await denied.subscribe()
    name, ctx = await first_of(rec, ["subscribed", "unsubscribed"])
    assert name == "unsubscribed" and ctx.code == 103, f"permission denied expected: {name} {ctx!r}"
    assert denied.state == SubscriptionState.UNSUBSCRIBED
    client.remove_subscription(denied)

    sub, ok = await subscribe(client, channel, token=await herald_token(user, channel=channel))
    assert ok.channel == channel
    await api.publish(PublishRequest(channel=channel, data={"secret": True}))
    assert codec.decode((await sub.rec.next("publication")).pub.data) == {"secret": True}


async def test_subscription_get_token(make_client):
    user = f"u-{uid()}"
    channel = f"secret:{uid()}"
    client = make_client(token=await herald_token(user))
    await connect(client)
    asked = []

    async def get_token(ch):
        asked.append(ch)
        return await herald_token(user, channel=ch)

    await subscribe(client, channel, get_token=get_token)
    assert asked == [channel]



async def test_subscription_token_for_another_channel_disconnects_3500(make_client):
    # As Centrifugo (internal/client/handler.go OnSubscribe): channel mismatch -> DisconnectInvalidToken.
    user = f"u-{uid()}"
    client = make_client(token=await herald_token(user), min_reconnect_delay=0.1, max_reconnect_delay=0.2)
    await connect(client)
    start = len(client.rec.events)
    token = await herald_token(user, channel=f"secret:other-{uid()}")
    rec = SubRecorder()
    sub = client.new_subscription(f"secret:{uid()}", events=rec, token=token)
    await sub.subscribe()
    name, ctx = await first_of(client.rec, ["disconnected", "connecting"], 5, start)
    assert name == "disconnected" and ctx.code == 3500, f"invalid token disconnect expected: {name} {ctx!r}"
    assert rec.of("subscribed") == []
    await asyncio.sleep(0.5)
    assert client.state == ClientState.DISCONNECTED


async def test_subscription_token_bad_signature_is_103(make_client):
    # As Centrifugo OnSubscribe: an invalid subscription token -> ErrorPermissionDenied.
    user = f"u-{uid()}"
    client = make_client(token=await herald_token(user))
    await connect(client)
    channel = f"secret:{uid()}"
    bad = sign_jwt({"sub": user, "channel": channel, "exp": now() + 3600}, SECRET + "-wrong")
    rec = SubRecorder()
    sub = client.new_subscription(channel, events=rec, token=bad)
    await sub.subscribe()
    name, ctx = await first_of(rec, ["subscribed", "unsubscribed"])
    assert name == "unsubscribed" and ctx.code == 103, f"permission denied expected: {name} {ctx!r}"
    assert client.state == ClientState.CONNECTED

# ---------------------------------------------------------------------------------------
# Server-side subscriptions


async def test_server_side_subscriptions_from_token(make_client, api, codec):
    user = f"u-{uid()}"
    ch1, ch2 = f"chat:srv-{uid()}", f"news-{uid()}"
    client = make_client(token=await herald_token(user, channels=[ch1, ch2]))
    await connect(client)
    subs = await client.rec.take("subscribed", 2)
    assert sorted(s.channel for s in subs) == sorted([ch1, ch2])

    await api.publish(PublishRequest(channel=ch1, data={"to": "ch1"}))
    await api.publish(PublishRequest(channel=ch2, data={"to": "ch2"}))
    got = await client.rec.take("publication", 2)
    assert [(p.channel, codec.decode(p.pub.data)) for p in got] == [(ch1, {"to": "ch1"}), (ch2, {"to": "ch2"})]


async def test_server_api_subscribe_unsubscribe(make_client, api, codec):
    user = f"u-{uid()}"
    channel = f"chat:srv-{uid()}"
    client = make_client(token=await herald_token(user))
    await connect(client)
    await api.subscribe(SubscribeRequest(user=user, channel=channel))
    await client.rec.wait("subscribed", lambda s: s.channel == channel)
    await api.publish(PublishRequest(channel=channel, data={"hello": "server-side"}))
    p = await client.rec.next("publication")
    assert p.channel == channel and codec.decode(p.pub.data) == {"hello": "server-side"}
    await api.unsubscribe(UnsubscribeRequest(user=user, channel=channel))
    await client.rec.wait("unsubscribed", lambda s: s.channel == channel)



async def test_server_api_refresh_expired_reconnects(make_client, api):
    # Centrifugo: refresh with expired=true closes the connection with DisconnectExpired (3005,
    # reconnect); the SDK reconnects (its token is still valid).
    user = f"u-{uid()}"
    client = make_client(token=await herald_token(user), min_reconnect_delay=0.1, max_reconnect_delay=0.3)
    first = (await connect(client)).client
    start = len(client.rec.events)
    await api.refresh(RefreshRequest(user=user, expired=True))
    name, ctx = await first_of(client.rec, ["connecting", "disconnected"], 5, start)
    assert name == "connecting" and ctx.code == 3005, f"expired disconnect (3005) expected: {name} {ctx!r}"
    name, again = await first_of(client.rec, ["connected", "disconnected"], 5, start)
    assert name == "connected" and again.client != first, f"reconnect expected: {name} {again!r}"

    # refresh with a future expire_at keeps the connection.
    start = len(client.rec.events)
    await api.refresh(RefreshRequest(user=user, expire_at=now() + 3600))
    await asyncio.sleep(0.5)
    later = [(n, c) for (n, c, _) in client.rec.events[start:]]
    assert client.state == ClientState.CONNECTED and later == [], f"{later!r}"

# ---------------------------------------------------------------------------------------
# Delta compression


def _payload(i):
    return {
        "title": "delta compression conformance",
        "body": "lorem ipsum dolor sit amet, " * 20,
        "counter": i,
        "tags": ["alpha", "beta", f"gamma-{i}"],
    }


async def test_delta_fossil(make_client, api, codec):
    channel = f"chat:room-{uid()}"
    client = make_client(token=await herald_token(f"u-{uid()}"))
    await connect(client)
    sub, _ = await subscribe(client, channel, delta=DeltaType.FOSSIL)
    sent = [_payload(i) for i in (1, 2, 3)]
    for data in sent:
        # `delta: true` is Centrifugo's server API flag asking for delta publications.
        await api.publish(PublishRequest(channel=channel, data=data, delta=True))
    got = await sub.rec.take("publication", 3)
    assert [codec.decode(p.pub.data) for p in got] == sent
    assert [p.pub.offset for p in got] == [1, 2, 3]


async def test_delta_fossil_on_a_durable_channel(make_client, api, codec):
    """Durable channels store each publication first; deltas must still be computed against
    the previous publication (centrifuge-python checks every patch's checksum)."""
    channel = f"durable:room-{uid()}"
    client = make_client(token=await herald_token(f"u-{uid()}"))
    await connect(client)
    sub, _ = await subscribe(client, channel, delta=DeltaType.FOSSIL)
    sent = [_payload(i) for i in (1, 2, 3, 4)]
    for data in sent:
        await api.publish(PublishRequest(channel=channel, data=data, delta=True))
    got = await sub.rec.take("publication", 4)
    assert [codec.decode(p.pub.data) for p in got] == sent
    assert [p.pub.offset for p in got] == [1, 2, 3, 4]
    assert [p.pub.delta for p in got] == [False, True, True, True], "first full, then fossil deltas"
    assert client.rec.of("disconnected") == [] and sub.rec.of("error") == [], client.rec.summary()


async def test_delta_fossil_really_sends_deltas(make_client, api, codec):
    channel = f"chat:room-{uid()}"
    client = make_client(token=await herald_token(f"u-{uid()}"))
    await connect(client)
    sub, _ = await subscribe(client, channel, delta=DeltaType.FOSSIL)
    for i in (1, 2):
        await api.publish(PublishRequest(channel=channel, data=_payload(i), delta=True))
    got = await sub.rec.take("publication", 2)
    assert [codec.decode(p.pub.data) for p in got] == [_payload(1), _payload(2)]
    flags = [p.pub.delta for p in got]
    assert flags == [False, True], f"first publication full, second a fossil delta: {flags}"
