from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devconsole.decoders.base import decode_message
from devconsole.decoders.graphql_ws import GraphQLWSDecoder, operation_name
from devconsole.model import Opcode
from tests.conftest import running_proxy, wait_until
from tests.protocol_servers import aiohttp_server, decoding_viewer

GQL = GraphQLWSDecoder()


def dec(text: str, side: str = "client") -> Any:
    return decode_message(GQL, text.encode(), Opcode.TEXT, side, None)  # type: ignore[arg-type]


def test_roles_by_type_and_side() -> None:
    sub = dec('{"type":"subscribe","id":"3","payload":{"query":"subscription OnTick { tick }"}}')
    p = sub.packets[0]
    assert (p.key, p.role, p.method) == ("op:3", "request", "OnTick")
    assert sub.summary == "gql subscribe id=3 OnTick"
    nxt = dec('{"type":"next","id":"3","payload":{"data":{"tick":1}}}', "server")
    assert nxt.summary == 'gql next id=3 {"data":{"tick":1}}' and nxt.packets[0].role == "partial"
    assert dec('{"type":"complete","id":"3"}', "server").packets[0].role == "reply"
    assert dec('{"type":"complete","id":"3"}', "client").packets[0].role == "cancel"
    assert dec('{"type":"ka"}', "server").packets[0].role == "beat"
    assert dec('{"type":"ping"}').packets[0].role == "ping"
    assert (
        dec('{"type":"start","id":"1","payload":{"query":"{ hello }"}}').packets[0].method
        == "hello"
    )


def test_errors_are_reasons() -> None:
    assert dec('{"type":"login"}').error == "unknown message type 'login'"
    assert dec("[1]").error == "a GraphQL over WebSocket message is a JSON object"
    assert "bad JSON" in (dec("{").error or "")


def test_operation_name() -> None:
    assert operation_name({"operationName": "X", "query": "query Y { a }"}) == "X"
    assert operation_name({"query": "mutation Send($t: String) { send(t: $t) }"}) == "Send"
    assert operation_name({"query": "subscription { messages { id } }"}) == "messages"
    assert operation_name(None) is None


fields_st = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "subscribe",
                "next",
                "error",
                "complete",
                "start",
                "data",
                "stop",
                "connection_init",
                "connection_ack",
                "ping",
                "pong",
                "ka",
            ]
        )
    },
    optional={
        "id": st.text(max_size=6),
        "payload": st.dictionaries(
            st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=3
        ),
    },
)


@given(fields_st)
def test_decode_encode_roundtrip(fields: dict[str, Any]) -> None:
    if fields["type"] in ("subscribe", "start", "next", "data", "complete", "stop"):
        fields.setdefault("id", "1")
    [(_op, payload)] = GQL.encode(fields)
    assert dec(payload.decode()).packets[0].fields == fields


@given(st.binary(max_size=64))
def test_fuzzed_input_never_raises(data: bytes) -> None:
    assert decode_message(GQL, data, Opcode.TEXT, "client", None).protocol == "graphql-ws"


# ----------------------------------------------------------------- strawberry + gql


def _schema() -> Any:
    import strawberry

    @strawberry.type
    class Query:
        @strawberry.field
        def hello(self) -> str:
            return "world"

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def count(self, target: int = 3) -> AsyncGenerator[int, None]:
            for i in range(target):
                yield i
                await asyncio.sleep(0.01)

    return strawberry.Schema(query=Query, subscription=Subscription)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("legacy", [False, True])
async def test_strawberry_and_gql_through_the_proxy(short_tmp: Any, legacy: bool) -> None:
    """A strawberry GraphQL server (aiohttp) and the gql client, over
    graphql-transport-ws and the legacy graphql-ws, through devconsole: detected by the
    subprotocol, the subscription paired subscribe -> next... -> complete."""
    from aiohttp import web
    from gql import Client, gql
    from gql.transport.exceptions import TransportQueryError
    from gql.transport.websockets import WebsocketsTransport
    from strawberry.aiohttp.views import GraphQLView

    app = web.Application()
    app.router.add_route("*", "/graphql", GraphQLView(schema=_schema()))
    async with aiohttp_server(app) as port:
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with decoding_viewer(rp.tap) as v:
                sub = (
                    WebsocketsTransport.APOLLO_SUBPROTOCOL
                    if legacy
                    else WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL
                )
                transport = WebsocketsTransport(
                    url=f"ws://127.0.0.1:{rp.port}/graphql", subprotocols=[sub]
                )
                got = []
                async with Client(transport=transport) as session:
                    query = gql("subscription Counting { count(target: 4) }")
                    async for result in session.subscribe(query):
                        got.append(result["count"])
                    if legacy:  # strawberry runs only subscriptions over the legacy one
                        with pytest.raises(TransportQueryError):
                            await session.execute(gql("query Hello { hello }"))
                    else:
                        assert (await session.execute(gql("query { hello }")))["hello"] == "world"
                assert got == [0, 1, 2, 3]
                await wait_until(lambda: any(c.ts_end for c in v.session.connections.values()))
                conn = next(iter(v.session.connections))
                assert v.tracker.protocol_of(conn) == "graphql-ws"
                types = [f["type"] for _, f in v.packets()]
                if legacy:
                    assert {"connection_init", "connection_ack", "start", "data"} <= set(types)
                else:
                    assert {"connection_init", "connection_ack", "subscribe", "next"} <= set(types)
                assert "complete" in types
                if legacy:  # the error answers its start: a reply, so not unanswered
                    assert "error" in types and "Hello" in {
                        m["method"] for m in v.analysis.pairs.endpoint_report("/graphql")["methods"]
                    }
                assert not [d for _, d in v.decoded() if not d.ok]
                lat = v.analysis.pairs.endpoint_report("/graphql")
                methods = {m["method"]: m for m in lat["methods"]}
                assert methods["Counting"]["count"] == 1
                assert methods["connection_init"]["count"] == 1
                assert lat["unanswered"] == 0
