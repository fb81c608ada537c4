"""The Proxitrace backend: one aiohttp application with its own SQLite store (``proxitrace backend serve``).

``proof_of_work``, ``wire``, ``codes`` and ``buckets`` are pure and shared with the agent's sync client;
everything that does I/O (``db``, ``app``, ``federation``, ``lists``) stays on the server side.
"""
