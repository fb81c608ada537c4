"""The Proxitrace backend: one aiohttp application with its own SQLite store (``proxitrace backend serve``).

What it shares with devices (the JSON bodies, proof of work, export files, JWS) lives in
``agent.protocol``; this package holds only the server side.
"""
