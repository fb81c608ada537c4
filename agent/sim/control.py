"""Client for the simulator's test-only control interface ``org.proxitrace.Sim1`` (async, dbus-fast).

Tests and the test-bed move adapters, flip the legacy flag, remove and re-add adapters, stall a
controller, hang the whole daemon, inject failures and hostile Device1 objects, and read counters — all over
the same private bus the agents use, so nothing bypasses D-Bus.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from agent.ble.names import (
    ADAPTER1,
    ADAPTER_PREFIX,
    BLUEZ,
    BUS_DAEMON,
    BUS_DAEMON_PATH,
    GET_NAME_OWNER,
    PROPERTIES,
    SET,
)
from agent.sim.bluez import CONTROL, CONTROL_PATH

CALL_TIMEOUT_S = 10.0


class SimControlError(RuntimeError):
    pass


class SimControl:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus

    @classmethod
    async def connect(cls, bus_address: str) -> SimControl:
        return cls(await MessageBus(bus_address=bus_address).connect())

    def close(self) -> None:
        self.bus.disconnect()

    async def __aenter__(self) -> SimControl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def _call(
        self,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        interface: str = CONTROL,
        path: str = CONTROL_PATH,
    ) -> list[Any]:
        msg = Message(
            destination=BLUEZ, path=path, interface=interface, member=member, signature=signature, body=body or []
        )
        reply = await asyncio.wait_for(self.bus.call(msg), CALL_TIMEOUT_S)
        if reply.message_type is MessageType.ERROR:
            raise SimControlError(f"{member}: {reply.error_name}: {reply.body[0] if reply.body else ''}")
        return list(reply.body)

    async def owner(self) -> str | None:
        reply = await self.bus.call(
            Message(
                destination=BUS_DAEMON,
                path=BUS_DAEMON_PATH,
                interface=BUS_DAEMON,
                member=GET_NAME_OWNER,
                signature="s",
                body=[BLUEZ],
            )
        )
        return reply.body[0] if reply.message_type is MessageType.METHOD_RETURN else None

    async def stats(self) -> dict[str, Any]:
        (text,) = await self._call("GetStats")
        return json.loads(text)

    async def adapter_stats(self, name: str) -> dict[str, Any]:
        return (await self.stats())["adapters"][name]

    async def add_adapter(self, name: str, **options: Any) -> None:
        """Plug an adapter in; with no options a previously removed one comes back as it was."""
        await self._call("AddAdapter", "ss", [name, json.dumps(options) if options else ""])

    async def remove_adapter(self, name: str) -> None:
        await self._call("RemoveAdapter", "s", [name])

    async def set_position(self, name: str, x: float, y: float) -> None:
        await self._call("SetPosition", "sdd", [name, float(x), float(y)])

    async def set_legacy(self, name: str, legacy: bool) -> None:
        await self._call("SetLegacy", "sb", [name, legacy])

    async def set_powered(self, name: str, powered: bool) -> None:
        await self._call(
            SET,
            "ssv",
            [ADAPTER1, "Powered", Variant("b", powered)],
            interface=PROPERTIES,
            path=f"{ADAPTER_PREFIX}{name}",
        )

    async def stall(self, name: str) -> None:
        """The controller stops reporting adverts until scanning is restarted (what a watchdog is for)."""
        await self._call("Stall", "s", [name])

    async def hang(self) -> None:
        """bluetoothd stops answering and reporting, but stays on the bus (calls queue until ``resume``)."""
        await self._call("Hang")

    async def resume(self) -> None:
        await self._call("Resume")

    async def drop_next(self, method: str, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` (any object) are never answered: a request bluetoothd lost."""
        await self._call("DropNext", "su", [method, count])

    async def fail_next(self, name: str, method: str, error: str, count: int = 1) -> None:
        await self._call("FailNext", "sssu", [name, method, error, count])

    async def inject_device(self, adapter: str, address: str, props: dict[str, Variant]) -> str:
        (path,) = await self._call("InjectDevice", "ssa{sv}", [adapter, address, props])
        return str(path)

    async def inject_properties(self, path: str, props: dict[str, Variant]) -> None:
        await self._call("InjectProperties", "oa{sv}", [path, props])

    async def inject_remove(self, path: str) -> None:
        await self._call("InjectRemove", "o", [path])

    async def add_beacon(
        self,
        service_data: dict[str, bytes],
        x: float = 0.0,
        y: float = 0.0,
        tx_power: int = 0,
        interval_ms: int = 100,
        uuids: tuple[str, ...] = (),
        include_tx_power: bool = False,
    ) -> str:
        """A transmitter that is not an adapter (a phone, a stranger), on air until removed."""
        options = {
            "service_data": {u: d.hex() for u, d in service_data.items()},
            "uuids": list(uuids),
            "x": x,
            "y": y,
            "tx_power": tx_power,
            "interval_ms": interval_ms,
            "include_tx_power": include_tx_power,
        }
        (ident,) = await self._call("AddBeacon", "s", [json.dumps(options)])
        return str(ident)

    async def add_flood(
        self, rate: float, x: float = 0.0, y: float = 0.0, tx_power: int = 0, uuid: str = "fd6f"
    ) -> str:
        """A neighbour spraying ``rate`` fresh IDs a simulated second (GAEN-shaped by default), each under a
        fresh address: a new Device1 per ID on every scanning adapter in range."""
        options = {"rate": rate, "x": x, "y": y, "tx_power": tx_power, "uuid": uuid}
        (ident,) = await self._call("AddFlood", "s", [json.dumps(options)])
        return str(ident)

    async def remove_flood(self, ident: str) -> None:
        await self._call("RemoveFlood", "s", [ident])

    async def remove_beacon(self, ident: str) -> None:
        await self._call("RemoveBeacon", "s", [ident])
