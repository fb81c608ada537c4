"""Child process for the kill -9 test: ingests as fast as it can and reports each committed total."""

import os
import sys
from pathlib import Path

from agent.schemes.base import SchemeName
from agent.store import SightingAggregator, Store

store = Store.open(Path(sys.argv[1]))
committed = store.sighting_counts(0)[0]
agg = SightingAggregator()
ids = [os.urandom(16) for _ in range(300)]
t = 1_780_000_000.0 + committed
while True:
    for i in range(2000):
        agg.add(SchemeName.GAEN, ids[i % 300], t, -60 - i % 30, -8, b"\x01\x02\x03\x04")
        t += 0.01
    store.flush(agg)
    committed += 2000
    print(committed, flush=True)
