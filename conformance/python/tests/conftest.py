"""Fixtures: codec (json / protobuf), client factory, cent API client."""

import logging

import pytest
import pytest_asyncio
from centrifuge import Client

import cent
from harness import API_KEY, API_URL, WS_URL, ClientRecorder, Codec

# centrifuge-python logs every frame it receives at DEBUG: pytest shows it for failed tests.
logging.getLogger("centrifuge").setLevel(logging.DEBUG)


@pytest.fixture(params=[False, True], ids=["json", "protobuf"])
def codec(request) -> Codec:
    return Codec(protobuf=request.param)


@pytest_asyncio.fixture
async def make_client(codec):
    """Factory of centrifuge-python clients in the codec's mode; all disconnected at the end."""
    clients = []

    def factory(**kwargs):
        events = ClientRecorder()
        kwargs.setdefault("timeout", 5.0)
        client = Client(WS_URL, events=events, use_protobuf=codec.protobuf, proxy=None, **kwargs)
        client.rec = events
        clients.append(client)
        return client

    yield factory
    for client in clients:
        try:
            await client.disconnect()
        except Exception:  # noqa: BLE001 - teardown must go on
            logging.getLogger(__name__).exception("disconnect failed")


@pytest_asyncio.fixture
async def api():
    async with cent.AsyncClient(API_URL, API_KEY, timeout=5.0) as client:
        yield client


# ---------------------------------------------------------------------------------------
# Svix SDK (webhook) tests


@pytest.fixture(scope="session")
def receiver():
    """One local webhook receiver for the session (tests use distinct paths)."""
    from webhook_harness import Receiver

    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture(scope="session")
def svix():
    """The official sync Svix SDK pointed at Herald."""
    from webhook_harness import svix_client

    return svix_client()
