"""Real agents of every scheme on virtual controllers of one shared air, through the real bluetoothd.

btvirt delivers one advertising report per scan start, and in our runs a controller that advertises and
scans at once never passed its reports up (the kernel dropped them); so here each agent advertises on its
own controller and all of them scan on a fourth one. Rotation with scanning on the same controller is checked
from the btmon capture instead (advertising is re-enabled after every rotation).
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.bluez_agents import RunningAgent, VmBackend, start_agent, wait_for

from agent.keys import KeyRing
from agent.schemes import dp3t, gaen
from agent.schemes.base import SchemeName
from agent.store import Store


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


SCHEMES = ("dp3t", "gaen", "ebid")


def test_agents_of_every_scheme_see_each_other(vm_adapters: list[str], tmp_path: Path, backend: VmBackend) -> None:
    """One agent per scheme, each advertising on its own controller, all three scanning on a fourth."""
    assert len(vm_adapters) >= 4, vm_adapters
    out = Path(os.environ.get("PROXITRACE_VM_OUT", tmp_path))
    scan = vm_adapters[3]
    agents = {
        scheme: start_agent(vm_adapters[i], tmp_path / scheme, scheme, out, scan_adapter=scan, backend=backend)
        for i, scheme in enumerate(SCHEMES)
    }
    try:
        for agent in agents.values():
            assert wait_for(lambda ag=agent: (ag.status() or {}).get("advertising") is True, 180), agent.log_path
        ids = {scheme: own_ids(agent, scheme) for scheme, agent in agents.items()}

        def unheard() -> list[str]:
            return [
                f"{listener} did not store {talker}'s IDs"
                for listener, agent in agents.items()
                for talker in SCHEMES
                if talker != listener and not heard_ids(agent).keys() & ids[talker]
            ]

        # bluetoothd restarts LE discovery every ~10 s, and btvirt reports each advertiser once per scan start
        assert wait_for(lambda: not unheard(), 120), unheard()
    finally:
        codes = {scheme: agent.stop() for scheme, agent in agents.items()}
    assert codes == dict.fromkeys(SCHEMES, 0)
    for agent in agents.values():
        assert all(count >= 1 for count, _ in heard_ids(agent).values())
