"""What travels between a device and the backend, owned by neither: the JSON bodies (``wire``), the
registration proof of work, GAEN export files and their schema, and the JWS that signs responses.

Both sides import these modules and nothing here imports either side, so a format changes in one place
and the two cannot drift apart. Only the pure core (clock, schemes) is imported; there is no I/O.
"""
