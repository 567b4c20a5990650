"""Configs moved over from Centrifugo: what the SDKs' own test setups use works on Herald."""

import logging

from centrifuge import Client, ClientState

from harness import ClientRecorder, PrivateHerald, connect, now, sign_jwt, uid

# The SDKs' repositories configure Centrifugo with `token_hmac_secret_key: "secret"`.
SHORT_SECRET = "secret"


async def test_short_hmac_secret_is_accepted_with_a_warning(tmp_path):
    async with PrivateHerald(tmp_path, HERALD_CLIENT__TOKEN__HMAC_SECRET=SHORT_SECRET) as herald:
        events = ClientRecorder()
        client = Client(herald.ws_url, events=events, token=sign_jwt({"sub": f"u-{uid()}", "exp": now() + 600}, SHORT_SECRET))
        client.rec = events
        try:
            ctx = await connect(client)
            assert ctx.client, ctx
            assert client.state == ClientState.CONNECTED
        finally:
            await client.disconnect()
        log = herald.log()
    assert "client.token.hmac_secret is shorter than 32 bytes" in log, log
    # Logs written to a file carry no colour codes, and never the secret.
    assert "\x1b[" not in log, f"ANSI escapes in a log written to a file: {log[:500]!r}"
    assert f'"{SHORT_SECRET}"' not in log and f"={SHORT_SECRET}" not in log
    logging.getLogger(__name__).debug("herald log: %s", log)
