"""The daemon and its wire: protocol, transport, server, broker, batching, auth, client.

Imports :mod:`heirloom.core` and :mod:`heirloom.store` only (docs/PROTOCOL.md is the
language-neutral description of what travels).
"""
