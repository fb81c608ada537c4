"""The sync tests run devices against the same real backend harness as the server tests."""

from support.backend_fixtures import clock, http, running, signing_key

__all__ = ["clock", "http", "running", "signing_key"]
