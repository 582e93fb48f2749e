"""Backends: one small module per kind of space, behind the protocol in `base`."""
