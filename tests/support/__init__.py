"""Helpers the test suites share, importable as `support.<module>` (pytest puts tests/ on the path)."""
