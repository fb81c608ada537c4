"""The sync tests run devices against the same real backend harness as the server tests."""

from support.backend_fixtures import (
    backend_engine,
    clock,
    http,
    postgres_cluster,
    pytest_generate_tests,
    running,
    signing_key,
)

__all__ = [
    "backend_engine",
    "clock",
    "http",
    "postgres_cluster",
    "pytest_generate_tests",
    "running",
    "signing_key",
]
