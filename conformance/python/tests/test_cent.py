"""cent (server HTTP API client, v5 API style) against Herald."""

import pytest
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    CentApiResponseError,
    CentUnauthorizedError,
    ChannelsRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
)

from harness import API_URL, connect, herald_token, subscribe, uid


async def test_publish_returns_offset_and_epoch(api):
    channel = f"chat:api-{uid()}"
    first = await api.publish(PublishRequest(channel=channel, data={"n": 1}))
    second = await api.publish(PublishRequest(channel=channel, data={"n": 2}))
    assert first.offset == 1 and second.offset == 2, f"{first!r} {second!r}"
    assert first.epoch and first.epoch == second.epoch


async def test_publish_without_history_channel(api):
    # Channels without namespace keep no history: publish still succeeds.
    result = await api.publish(PublishRequest(channel=f"plain-{uid()}", data={"n": 1}))
    assert result.offset == 0 and result.epoch == "", f"no stream position without history: {result!r}"


@pytest.mark.parametrize("codec", [False], ids=["json"], indirect=True)
async def test_broadcast(api, make_client):
    channels = [f"chat:bc-{uid()}" for _ in range(3)]
    client = make_client(token=await herald_token(f"u-{uid()}"))
    await connect(client)
    subs = [(await subscribe(client, ch))[0] for ch in channels]
    result = await api.broadcast(BroadcastRequest(channels=channels, data={"all": True}))
    assert len(result.responses) == 3, f"one response per channel: {result!r}"
    for response in result.responses:
        assert response.error is None, f"{response!r}"
        assert response.result is not None and response.result.offset == 1, f"{response!r}"
    for sub in subs:
        ctx = await sub.rec.next("publication")
        assert ctx.pub.data == {"all": True}


async def test_history_and_history_remove(api):
    channel = f"chat:hist-{uid()}"
    for i in range(1, 5):
        await api.publish(PublishRequest(channel=channel, data={"n": i}))
    hist = await api.history(HistoryRequest(channel=channel, limit=10))
    assert [p.data for p in hist.publications] == [{"n": i} for i in range(1, 5)]
    assert [p.offset for p in hist.publications] == [1, 2, 3, 4]
    assert hist.offset == 4 and hist.epoch

    rev = await api.history(HistoryRequest(channel=channel, limit=2, reverse=True))
    assert [p.data for p in rev.publications] == [{"n": 4}, {"n": 3}]

    top = await api.history(HistoryRequest(channel=channel))
    assert top.publications == [] and top.offset == 4

    await api.history_remove(HistoryRemoveRequest(channel=channel))
    after = await api.history(HistoryRequest(channel=channel, limit=10))
    assert after.publications == [], f"history_remove empties the history: {after!r}"
    assert (after.offset == 4 and after.epoch == hist.epoch) or after.epoch != hist.epoch, (
        f"history_remove must keep the stream position or start a new epoch: {after!r} (before {hist.offset}/{hist.epoch})"
    )


@pytest.mark.parametrize("codec", [False], ids=["json"], indirect=True)
async def test_presence_presence_stats_channels_info(api, make_client):
    channel = f"chat:pres-{uid()}"
    user_a, user_b = f"a-{uid()}", f"b-{uid()}"
    a = make_client(token=await herald_token(user_a))
    b = make_client(token=await herald_token(user_b))
    id_a = (await connect(a)).client
    id_b = (await connect(b)).client
    await subscribe(a, channel)
    await subscribe(b, channel)

    presence = await api.presence(PresenceRequest(channel=channel))
    assert sorted(presence.presence) == sorted([id_a, id_b])
    assert presence.presence[id_a].user == user_a
    assert presence.presence[id_a].client == id_a
    assert presence.presence[id_b].user == user_b

    stats = await api.presence_stats(PresenceStatsRequest(channel=channel))
    assert (stats.num_clients, stats.num_users) == (2, 2)

    channels = await api.channels(ChannelsRequest())
    assert channel in channels.channels, f"active channel listed: {sorted(channels.channels)[:20]}"
    assert channels.channels[channel].num_clients == 2

    filtered = await api.channels(ChannelsRequest(pattern=channel))
    assert list(filtered.channels) == [channel]

    info = await api.info(InfoRequest())
    assert len(info.nodes) >= 1
    node = info.nodes[0]
    assert node.uid and node.name, f"node identity: {node!r}"
    assert node.num_clients >= 2 and node.num_users >= 2 and node.num_channels >= 1, f"{node!r}"


async def test_batch(api):
    channel = f"chat:batch-{uid()}"
    result = await api.batch(
        BatchRequest(
            requests=[
                PublishRequest(channel=channel, data={"n": 1}),
                PublishRequest(channel=channel, data={"n": 2}),
                HistoryRequest(channel=channel, limit=10),
            ]
        )
    )
    assert len(result.replies) == 3, f"{result!r}"
    assert result.replies[0].offset == 1
    assert result.replies[1].offset == 2
    assert [p.data for p in result.replies[2].publications] == [{"n": 1}, {"n": 2}]

    parallel = await api.batch(
        BatchRequest(
            requests=[PresenceStatsRequest(channel=channel), InfoRequest()],
            parallel=True,
        )
    )
    assert parallel.replies[0].num_clients == 0
    assert len(parallel.replies[1].nodes) >= 1


async def test_error_result_for_bad_requests(api):
    # Unknown namespace: Centrifugo answers 102 "unknown channel".
    with pytest.raises(CentApiResponseError) as unknown:
        await api.publish(PublishRequest(channel=f"nosuchns:{uid()}", data={"x": 1}))
    assert unknown.value.code == 102, f"{unknown.value!r}"

    # Empty channel: 107 "bad request".
    with pytest.raises(CentApiResponseError) as bad:
        await api.publish(PublishRequest(channel="", data={"x": 1}))
    assert bad.value.code == 107, f"{bad.value!r}"

    # Presence on a namespace without presence: 108 "not available".
    with pytest.raises(CentApiResponseError) as na:
        await api.presence(PresenceRequest(channel=f"secret:{uid()}"))
    assert na.value.code == 108, f"{na.value!r}"


async def test_wrong_api_key_is_unauthorized():
    async with AsyncClient(API_URL, "not-the-key", timeout=5.0) as bad:
        with pytest.raises(CentUnauthorizedError):
            await bad.publish(PublishRequest(channel=f"chat:{uid()}", data={"x": 1}))
