"""Scale-out over Redis: many proxies in one view, and the app's Redis backplane.

I/O modules around the core ``devconsole.instances`` (the stream's entry format and the
merge of instances) and ``devconsole.analysis.fanout`` (the backplane trace):

- ``config``: Redis URLs (``redis://``, ``rediss://``, ``DEVCONSOLE_REDIS_PASSWORD``).
- ``publisher``: the proxy side, an event sink that writes batches to a Redis Stream and
  runs commands sent to this instance (``--publish``, ``--accept-commands``).
- ``backplane``: records the app's own pub/sub publications (``--backplane``).
- ``addon``: the mitmproxy addon that wires both into a proxy.
- ``source``: the viewer side, a ``Source`` over the stream (``--tap redis://...``).
- ``redisserver``: starts a private ``redis-server`` (tests, the demo, benchmarks).
- ``demo``: ``devconsole demo --scale N``.
"""
