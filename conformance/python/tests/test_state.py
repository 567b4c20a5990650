"""What centrifuge-python's own test suite relies on beyond the basics: get_state with
reject-unrecovered (error 112), delta_publish namespaces and publication filtering by tags."""

import asyncio
import logging

from cent import HistoryRequest, PublishRequest
from centrifuge import DeltaType, Filter, StreamPosition

from harness import SubRecorder, connect, first_of, herald_token, subscribe, uid


def _payload(i):
    return {"title": "state conformance", "body": "lorem ipsum dolor sit amet, " * 10, "counter": i}


async def test_get_state_called_again_after_unrecoverable_position(make_client, api, codec, caplog):
    caplog.set_level(logging.DEBUG, logger="centrifuge")
    channel = f"smallhistory:state-{uid()}"
    await api.publish(PublishRequest(channel=channel, data=_payload(0)))
    client = make_client(token=await herald_token(f"u-{uid()}"), min_reconnect_delay=0.05, max_reconnect_delay=0.1)
    calls = []

    async def get_state(ch: str) -> StreamPosition:
        calls.append(ch)
        top = await api.history(HistoryRequest(channel=ch, limit=0))
        return StreamPosition(offset=top.offset, epoch=top.epoch)

    await connect(client)
    sub, _ = await subscribe(
        client, channel, get_state=get_state, min_resubscribe_delay=0.05, max_resubscribe_delay=0.1
    )
    assert calls == [channel], "get_state on the first subscribe"

    await client.disconnect()
    for i in range(1, 6):
        await api.publish(PublishRequest(channel=channel, data=_payload(i)))
    # history_size is 2: the saved position is gone; the server answers 112 to the subscribe
    # (flag 3) and the SDK reloads its state and subscribes again.
    start = len(sub.rec.events)
    await client.connect()
    await first_of(sub.rec, ["subscribed"], 8, start)
    assert len(calls) == 2, f"get_state again after 112: {calls}"
    assert any("112" in r.getMessage() for r in caplog.records if r.name.startswith("centrifuge")), (
        "the server answered 112 (unrecoverable position)"
    )
    assert sub.rec.of("unsubscribed") == [], sub.rec.summary()

    await api.publish(PublishRequest(channel=channel, data={"live": True}))
    got = await sub.rec.next("publication")
    assert codec.decode(got.pub.data) == {"live": True}


async def test_delta_publish_namespace_sends_deltas_unasked(make_client, api, codec):
    channel = f"deltapub:room-{uid()}"
    client = make_client(token=await herald_token(f"u-{uid()}"))
    await connect(client)
    sub, _ = await subscribe(client, channel, delta=DeltaType.FOSSIL)
    sent = [_payload(i) for i in (1, 2, 3)]
    for data in sent:
        await api.publish(PublishRequest(channel=channel, data=data))  # no delta flag
    got = await sub.rec.take("publication", 3)
    assert [codec.decode(p.pub.data) for p in got] == sent
    assert [p.pub.delta for p in got] == [False, True, True], "first full, then fossil deltas"


async def test_tags_filter_delivers_only_matching_publications(make_client, api, codec):
    channel = f"tagged:ticks-{uid()}"
    client = make_client(token=await herald_token(f"u-{uid()}"))
    await connect(client)
    tags_filter = Filter.all(Filter.eq("ticker", "AAPL"), Filter.gte("price", "100"))
    sub, _ = await subscribe(client, channel, tags_filter=tags_filter)
    ticks = [("AAPL", "150"), ("BTC", "150"), ("AAPL", "99.99"), ("AAPL", "100")]
    for i, (ticker, price) in enumerate(ticks):
        await api.publish(PublishRequest(channel=channel, data={"i": i}, tags={"ticker": ticker, "price": price}))
    got = await sub.rec.take("publication", 2)
    assert [codec.decode(p.pub.data) for p in got] == [{"i": 0}, {"i": 3}]
    assert [p.pub.tags for p in got] == [{"ticker": "AAPL", "price": "150"}, {"ticker": "AAPL", "price": "100"}]
    await asyncio.sleep(0.3)
    assert len(sub.rec.of("publication")) == 2, "nothing else arrives"

    # Filters on a namespace without allow_tags_filter are refused with 107.
    rec = SubRecorder()
    refused = client.new_subscription(f"chat:ticks-{uid()}", events=rec, tags_filter=Filter.eq("ticker", "AAPL"))
    await refused.subscribe()
    ctx = await rec.next("unsubscribed")
    assert ctx.code == 107, ctx
