from support.backend_fixtures import clock, http, running, signing_key

__all__ = ["clock", "http", "running", "signing_key"]
