"""HAR 1.2 as a JSON Schema, written from the specification
(http://www.softwareishard.com/blog/har-12-spec/): the required fields and their types
of every object an exporter writes. Custom fields (``_name``) are allowed everywhere, as
the specification says. Used with the ``jsonschema`` package."""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_NUM = {"type": "number"}
_INT = {"type": "integer"}
_DATE = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"}
_OPT_NUM = {"type": "number", "minimum": -1}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    props = {**required, **(optional or {}), "comment": _STR}
    return {
        "type": "object",
        "required": list(required),
        "properties": props,
        # custom fields must start with an underscore
        "patternProperties": {"^_": {}},
        "additionalProperties": False,
    }


_NV = _obj({"name": _STR, "value": _STR})
_COOKIE = _obj(
    {"name": _STR, "value": _STR},
    {
        "path": _STR,
        "domain": _STR,
        "expires": {"type": ["string", "null"]},
        "httpOnly": {"type": "boolean"},
        "secure": {"type": "boolean"},
        "sameSite": _STR,
    },
)
_CONTENT = _obj(
    {"size": _INT, "mimeType": _STR},
    {"compression": _INT, "text": _STR, "encoding": _STR},
)
_REQUEST = _obj(
    {
        "method": _STR,
        "url": _STR,
        "httpVersion": _STR,
        "cookies": {"type": "array", "items": _COOKIE},
        "headers": {"type": "array", "items": _NV},
        "queryString": {"type": "array", "items": _NV},
        "headersSize": _INT,
        "bodySize": _INT,
    },
    {"postData": {"type": "object"}},
)
_RESPONSE = _obj(
    {
        "status": _INT,
        "statusText": _STR,
        "httpVersion": _STR,
        "cookies": {"type": "array", "items": _COOKIE},
        "headers": {"type": "array", "items": _NV},
        "content": _CONTENT,
        "redirectURL": _STR,
        "headersSize": _INT,
        "bodySize": _INT,
    }
)
_TIMINGS = _obj(
    {
        "send": {"type": "number", "minimum": 0},
        "wait": {"type": "number", "minimum": 0},
        "receive": {"type": "number", "minimum": 0},
    },
    {"blocked": _OPT_NUM, "dns": _OPT_NUM, "connect": _OPT_NUM, "ssl": _OPT_NUM},
)
_ENTRY = _obj(
    {
        "startedDateTime": _DATE,
        "time": {"type": "number", "minimum": 0},
        "request": _REQUEST,
        "response": _RESPONSE,
        "cache": {"type": "object"},
        "timings": _TIMINGS,
    },
    {"pageref": _STR, "serverIPAddress": _STR, "connection": _STR},
)
_CREATOR = _obj({"name": _STR, "version": _STR})
_PAGE = _obj(
    {"startedDateTime": _DATE, "id": _STR, "title": _STR, "pageTimings": {"type": "object"}}
)

HAR_1_2: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["log"],
    "properties": {
        "log": _obj(
            {
                "version": {"const": "1.2"},
                "creator": _CREATOR,
                "entries": {"type": "array", "items": _ENTRY},
            },
            {"browser": _CREATOR, "pages": {"type": "array", "items": _PAGE}},
        )
    },
    "additionalProperties": False,
}


def chrome_import_problems(doc: dict[str, Any]) -> list[str]:
    """What Chrome DevTools' HAR importer (front_end/models/har: HARFormat.ts, Importer.ts)
    would refuse or skip: a date it cannot parse, a number that is NaN, a WebSocket
    message without time/opcode/data or with a type other than send/receive/error."""
    import math
    from datetime import datetime

    problems: list[str] = []

    def num(v: Any, where: str) -> None:
        try:
            if isinstance(v, bool) or math.isnan(float(v)):
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"{where}: not a number: {v!r}")

    def date(v: Any, where: str) -> None:
        try:
            datetime.fromisoformat(str(v).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{where}: not a date: {v!r}")

    log = doc.get("log")
    if not isinstance(log, dict) or not isinstance(log.get("entries"), list):
        return ["log.entries is expected to be an array"]
    for i, e in enumerate(log["entries"]):
        w = f"entries[{i}]"
        date(e.get("startedDateTime"), w + ".startedDateTime")
        num(e.get("time"), w + ".time")
        for part, keys in (
            ("request", ("headersSize", "bodySize")),
            ("response", ("status", "headersSize", "bodySize")),
        ):
            for k in keys:
                num(e.get(part, {}).get(k), f"{w}.{part}.{k}")
        num(e.get("response", {}).get("content", {}).get("size"), w + ".response.content.size")
        for k in ("send", "wait", "receive"):
            num(e.get("timings", {}).get(k), f"{w}.timings.{k}")
        msgs = e.get("_webSocketMessages")
        if e.get("_resourceType") == "websocket" and not isinstance(msgs, list):
            problems.append(w + ": websocket entry without _webSocketMessages")
        for j, m in enumerate(msgs or []):
            mw = f"{w}._webSocketMessages[{j}]"
            if not isinstance(m, dict):
                problems.append(mw + ": not an object")
                continue
            if m.get("type") not in ("send", "receive", "error"):
                problems.append(f"{mw}: type {m.get('type')!r}")
            for k in ("time", "opcode"):
                if not isinstance(m.get(k), int | float) or isinstance(m.get(k), bool):
                    problems.append(f"{mw}.{k}: {m.get(k)!r}")
            if not isinstance(m.get("data"), str):
                problems.append(f"{mw}.data: not a string")
    return problems
