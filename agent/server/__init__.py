"""The Proxitrace backend: one aiohttp application with its own SQLite store (``proxitrace backend serve``).

``pow``, ``wire`` and ``buckets`` are pure and shared with the agent's sync client; everything that does
I/O (``db``, ``app``, ``federation``, ``publisher``) stays on the server side.
"""
