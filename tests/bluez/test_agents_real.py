"""Two real agents on virtual controllers of one shared air, through the real bluetoothd.

btvirt delivers one advertising report per scan start, and in our runs a controller that advertises and
scans at once never passed its reports up (the kernel dropped them); so here each agent advertises on its
own controller and both scan on a third one. Rotation with scanning on the same controller is checked
from the btmon capture instead (advertising is re-enabled after every rotation).
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.keys import KeyRing
from agent.schemes import dp3t, gaen
from agent.schemes.base import SchemeName
from agent.store import Store
from tests.bluez.agents import RunningAgent, VmBackend, start_agent, wait_for


def own_ids(agent: RunningAgent, scheme: str) -> set[bytes]:
    store = Store.open(agent.state_dir)
    try:
        if scheme == "dp3t":
            [row] = store.own_keys(SchemeName.DP3T, "chain")
            state = dp3t.Dp3tKeyState(int(row.meta["start_day"]), row.material[:32], row.material[32:])
            ids: set[bytes] = set()
            for day in range(state.start_day, state.start_day + 20):
                ids.update(dp3t.ephids(state.sk_for_day(day)))
            return ids
        if scheme == "ebid":
            return {e.ebid for e in KeyRing(store, SchemeName.EBID).ebid_batch().entries}
        ids = set()
        for k in store.own_keys(SchemeName.GAEN, "tek"):
            ids.update(gaen.rpis(gaen.rpik(k.material), int(k.meta["rolling_start"])))
        return ids
    finally:
        store.close()


def heard_ids(agent: RunningAgent) -> dict[bytes, tuple[int, int | None]]:
    store = Store.open(agent.state_dir)
    try:
        return {w.ephemeral_id: (w.count, w.tx_power) for w in store.windows()}
    finally:
        store.close()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmBackend]:
    workdir = tmp_path_factory.mktemp("backend")
    server = VmBackend(workdir, Path(os.environ.get("PROXITRACE_VM_OUT", workdir)))
    yield server
    assert server.stop() == 0


@pytest.mark.parametrize("scheme", ["dp3t", "gaen", "ebid"])
def test_two_agents_see_each_other(
    scheme: str, vm_adapters: list[str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    assert len(vm_adapters) >= 3, vm_adapters
    out = Path(os.environ.get("PROXITRACE_VM_OUT", tmp_path))
    server = request.getfixturevalue("backend") if scheme == "ebid" else None
    a = start_agent(vm_adapters[0], tmp_path / f"{scheme}-a", scheme, out, scan_adapter=vm_adapters[2], backend=server)
    b = start_agent(vm_adapters[1], tmp_path / f"{scheme}-b", scheme, out, scan_adapter=vm_adapters[2], backend=server)
    try:
        for agent in (a, b):
            assert wait_for(lambda ag=agent: (ag.status() or {}).get("advertising") is True, 120), agent.log_path
        ids = {a.adapter: own_ids(a, scheme), b.adapter: own_ids(b, scheme)}

        def each_heard_the_other() -> bool:
            return bool(heard_ids(a).keys() & ids[b.adapter]) and bool(heard_ids(b).keys() & ids[a.adapter])

        # bluetoothd restarts LE discovery every ~10 s, and btvirt reports each advertiser once per scan start
        assert wait_for(each_heard_the_other, 90), "the agents did not store each other's IDs"
    finally:
        assert a.stop() == 0 and b.stop() == 0
    for listener, talker in ((a, b), (b, a)):
        heard = heard_ids(listener)
        assert heard.keys() & ids[talker.adapter], f"{listener.adapter} did not store {talker.adapter}'s IDs"
        assert all(count >= 1 for count, _ in heard.values())
