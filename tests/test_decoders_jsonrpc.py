from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from devconsole.decoders.base import decode_message
from devconsole.decoders.jsonrpc import JsonRpcDecoder, request
from devconsole.model import Opcode
from tests.conftest import running_proxy, wait_until, ws_server
from tests.protocol_servers import decoding_viewer

RPC = JsonRpcDecoder()


def dec(text: str, side: str = "client") -> Any:
    return decode_message(RPC, text.encode(), Opcode.TEXT, side, None)  # type: ignore[arg-type]


def test_requests_notifications_responses() -> None:
    d = dec('{"jsonrpc":"2.0","method":"eth_subscribe","params":["newHeads"],"id":7}')
    assert d.summary == 'rpc eth_subscribe id=7 ["newHeads"]'
    p = d.packets[0]
    assert (p.key, p.role, p.method) == ("id:7", "request", "eth_subscribe")
    n = dec('{"jsonrpc":"2.0","method":"update","params":{"x":1}}').packets[0]
    assert n.role is None and n.summary == 'rpc update {"x":1} (notification)'
    r = dec('{"jsonrpc":"2.0","result":"0xabc","id":7}', "server").packets[0]
    assert (r.key, r.role) == ("id:7", "reply") and r.summary == 'rpc result id=7 "0xabc"'
    e = dec('{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":"a"}')
    assert (
        e.packets[0].key == 'id:"a"' and e.summary == 'rpc error id="a" -32601 "Method not found"'
    )


def test_batches_and_errors() -> None:
    d = dec('[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"b"}]')
    assert [p.fields["method"] for p in d.packets] == ["a", "b"] and d.note == "batch of 2"
    assert d.value == {"packets": [p.fields for p in d.packets]}
    assert dec("[]").error == "an empty batch"
    assert dec('{"jsonrpc":"1.0","method":"a"}').error == 'missing "jsonrpc": "2.0"'
    assert dec('{"jsonrpc":"2.0","id":1}').error is not None


ids = st.none() | st.integers(-(10**6), 10**6) | st.text(max_size=5)
params = (
    st.none()
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["request", "result", "error"]))
    f: dict[str, Any] = {"jsonrpc": "2.0"}
    if kind == "request":
        f["method"] = draw(st.text(max_size=8))
        p = draw(params)
        if p is not None:
            f["params"] = p
        i = draw(ids)
        if i is not None:
            f["id"] = i
    elif kind == "result":
        f["result"] = draw(params)
        f["id"] = draw(ids)
    else:
        f["error"] = {
            "code": draw(st.integers(-32768, -32000)),
            "message": draw(st.text(max_size=8)),
        }
        f["id"] = draw(ids)
    return f


@given(st.lists(messages(), min_size=1, max_size=3))
def test_decode_encode_roundtrip(batch: list[dict[str, Any]]) -> None:
    fields: dict[str, Any] = batch[0] if len(batch) == 1 else {"packets": batch}
    [(op, payload)] = RPC.encode(fields)
    d = decode_message(RPC, payload, op, "client", None)
    assert d.ok and d.value == fields


@given(st.binary(max_size=64))
def test_fuzzed_input_never_raises(data: bytes) -> None:
    assert decode_message(RPC, data, Opcode.TEXT, "client", None).protocol == "jsonrpc"


@pytest.mark.timeout(60)
async def test_jsonrpcserver_and_client_through_the_proxy(short_tmp: Any) -> None:
    """jsonrpcserver answering jsonrpcclient's requests (and a batch) over a WebSocket
    through devconsole: detected by content (no subprotocol), each id paired."""
    from jsonrpcclient import parse, request_json
    from jsonrpcserver import Error, Success, async_dispatch, method

    @method  # type: ignore[misc]
    async def add(a: int, b: int) -> Any:
        return Success(a + b)

    @method  # type: ignore[misc]
    async def fail() -> Any:
        return Error(-32000, "nope")

    async def handler(ws: Any) -> None:
        async for raw in ws:
            out = await async_dispatch(raw)
            if out:
                await ws.send(out)

    async with ws_server(handler) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with decoding_viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/api", proxy=None) as ws:
                    await ws.send(request_json("add", params=[2, 3]))
                    assert parse(json.loads(await ws.recv())).result == 5
                    await ws.send(request_json("fail"))
                    assert parse(json.loads(await ws.recv())).message == "nope"
                    batch = [request("add", [1, 1], id=10), request("add", [2, 2], id=11)]
                    await ws.send(json.dumps(batch))
                    assert {r["id"] for r in json.loads(await ws.recv())} == {10, 11}
                    await ws.send(json.dumps(request("add", [1, 2], id=12)))
                    await ws.recv()
                    await ws.send(json.dumps(request("slow", None, id=99)))  # unknown method
                    assert json.loads(await ws.recv())["error"]["code"] == -32601
                await wait_until(lambda: any(c.ts_end for c in v.session.connections.values()))
                cid = next(iter(v.session.connections))
                assert v.tracker.protocol_of(cid) == "jsonrpc"
                assert v.tracker.reason_of(cid) == "content"
                assert not [d for _, d in v.decoded() if not d.ok]
                lat = v.analysis.pairs.endpoint_report("/api")
                methods = {m["method"]: m["count"] for m in lat["methods"]}
                assert methods == {"add": 4, "fail": 1, "slow": 1}
                assert lat["unanswered"] == 0 and lat["requests"] == 6
