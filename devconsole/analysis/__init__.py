"""Analyses of observed traffic: heartbeats, reconnect backoff, production readiness.

Core package: no I/O, imports neither mitmproxy nor textual nor rich. Everything here is
computed from model objects (Events, Connections) and can be driven by a test by hand.
"""
