"""The ID schemes: pure key schedules, ID derivation, metadata and advert payloads (no I/O)."""
