"""A simulated bluetoothd: the part of ``org.bluez`` the agent and bleak use, over a real D-Bus.

It behaves like BlueZ plus the kernel where the agent's correctness depends on it:

- every advertising instance put on air gets a fresh non-resolvable private address (what the kernel does
  for a non-connectable advert with Privacy off), and a data change in place keeps the address — except that
  on a controller without extended advertising a second instance put on air while another is on takes that
  one's address (one controller-wide random address, which cannot change while advertising is enabled);
  an ``extended`` adapter gives each instance (advertising set) its own and says so as bluetoothd 5.66 does
  (``SupportedSecondaryChannels``; ``HardwareOffload`` in SupportedFeatures only with ``experimental``);
- ``RegisterAdvertisement`` reads the advert back from the caller with ``Properties.GetAll`` and rejects
  bad types or oversize data as bluetoothd does;
- a ``legacy`` adapter that is scanning accepts a new registration but never puts it on air (the Pi's
  controller refuses LE Set Random Address while scanning), and the refusal is counted;
- devices appear on scanning adapters as ``Device1`` objects updated by PropertiesChanged, expire after a
  timeout, and an advertiser's adverts vanish when its connection does;
- adapters can be removed and added, powered off and on, stalled, and made to fail named calls, through a
  test-only control interface (``org.proxitrace.Sim1`` at ``/org/proxitrace/sim``);
- the whole daemon can hang (``Hang``): alive and owning ``org.bluez`` but answering nothing and reporting
  nothing, as bluetoothd stuck in a blocking call. The calls it receives meanwhile are queued, in order, and
  handled when it resumes (``Resume``), so their late replies reach callers that long gave up, as they would;
- the next calls of one method can be swallowed for good (``DropNext``): never answered, not even late, as a
  request bluetoothd lost — only a caller's own timeout ends the wait;
- a neighbour can spray fresh IDs (``AddFlood``): every one a new random address, so every one a new
  ``Device1`` (InterfacesAdded) on each scanning adapter in range, kept until the device timeout as
  bluetoothd keeps a temporary device — the load a real flood puts on the agent's D-Bus caches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

from agent.ble.names import (
    ADAPTER1,
    ADAPTER_PREFIX,
    ADD_MATCH,
    ADV_MANAGER,
    ADVERTISEMENT1,
    BUS_DAEMON,
    BUS_DAEMON_PATH,
    CAN_SET_TX_POWER,
    DEVICE1,
    E_ALREADY_EXISTS,
    E_DOES_NOT_EXIST,
    E_FAILED,
    E_IN_PROGRESS,
    E_INVALID_ARGUMENTS,
    E_NOT_PERMITTED,
    E_NOT_READY,
    E_UNKNOWN_METHOD,
    GET,
    GET_ALL,
    HARDWARE_OFFLOAD,
    MONITOR1,
    MONITOR_MANAGER,
    NAME_OWNER_CHANGED,
    PROPERTIES,
    PROPERTIES_CHANGED,
    REGISTER_ADVERTISEMENT,
    REGISTER_MONITOR,
    RELEASE,
    REMOVE_DEVICE,
    REMOVE_MATCH,
    SECONDARY_1M,
    SECONDARY_2M,
    SET_DISCOVERY_FILTER,
    START_DISCOVERY,
    STOP_DISCOVERY,
    SUPPORTED_FEATURES,
    SUPPORTED_INSTANCES,
    SUPPORTED_SECONDARY_CHANNELS,
    UNREGISTER_ADVERTISEMENT,
    UNREGISTER_MONITOR,
)
from agent.clock import Clock
from agent.sim import air_log as al
from agent.sim.advert import AdvertError, ParsedAdvert, matches_or_patterns, parse_advertisement, parse_uuid
from agent.sim.channel import Channel
from agent.sim.config import AdapterConfig, SimConfig, SimConfigError, adapter_config_from_dict
from agent.sim.objects import ObjectTable, send_backlog, tolerate_full_socket
from agent.sim.radio import Track, advertising_events, distance, sample_rssi

log = logging.getLogger(__name__)

CONTROL = "org.proxitrace.Sim1"
CONTROL_PATH = "/org/proxitrace/sim"

E_CONTROL = "org.proxitrace.Sim1.Error"
CALLBACK_TIMEOUT_S = 5.0
MAX_SEND_BACKLOG = 2000
FAULTABLE = frozenset(
    {SET_DISCOVERY_FILTER, START_DISCOVERY, STOP_DISCOVERY, REGISTER_ADVERTISEMENT, UNREGISTER_ADVERTISEMENT}
)


class CallError(Exception):
    """Reply to the current call with this D-Bus error."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.text = text


@dataclass
class Transmitter:
    """Something that advertises: a client's registered advert on an adapter, or a free-standing beacon."""

    owner: str
    path: str
    adapter: str | None
    advert: ParsedAdvert
    raw_props: dict[str, Variant]
    tx_power: int
    interval_s: float
    track: Track | None = None
    address: str | None = None
    instance: str | None = None
    next_event: float = 0.0
    events: int = 0
    reports: int = 0
    match_rule: str | None = None

    @property
    def label(self) -> str:
        return self.adapter if self.adapter is not None else f"beacon:{self.path}"


@dataclass
class Flood:
    """A neighbour advertising ``rate`` fresh IDs a simulated second, each under its own fresh address."""

    ident: str
    advert: ParsedAdvert  # the shape every fake shares (UUIDs), for the receivers' filters
    uuid: str
    data_len: int
    rate: float
    x: float
    y: float
    tx_power: int
    carry: float = 0.0
    sent: int = 0
    lost: int = 0  # fakes generated while the bus was saturated: never reached D-Bus


@dataclass
class DiscoveryFilter:
    duplicates: bool = False
    uuids: frozenset[str] | None = None
    rssi: int | None = None


@dataclass
class Monitor:
    patterns: tuple[tuple[int, int, bytes], ...] | None = None


@dataclass
class SeenDevice:
    path: str
    instance: str | None
    last_seen: float


@dataclass
class SimAdapter:
    cfg: AdapterConfig
    legacy: bool
    powered: bool
    track: Track
    filters: dict[str, DiscoveryFilter] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    monitors: dict[tuple[str, str], Monitor] = field(default_factory=dict)
    adverts: dict[tuple[str, str], Transmitter] = field(default_factory=dict)
    devices: dict[str, SeenDevice] = field(default_factory=dict)
    stalled: bool = False
    faults: dict[str, deque[str]] = field(default_factory=dict)
    refused_while_scanning: int = 0
    registrations: int = 0
    refused_registrations: int = 0  # RegisterAdvertisement answered AlreadyExists or NotPermitted
    discovery_starts: int = 0
    reports_received: int = 0

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def path(self) -> str:
        return f"{ADAPTER_PREFIX}{self.cfg.name}"

    @property
    def discovering(self) -> bool:
        return bool(self.sessions)

    @property
    def scanning(self) -> bool:
        """Active discovery or an active passive monitor: either way the controller is scanning."""
        return self.discovering or any(m.patterns is not None for m in self.monitors.values())

    def wants_duplicates(self) -> bool:
        return any(self.filters.get(s, DiscoveryFilter()).duplicates for s in self.sessions) or any(
            m.patterns is not None for m in self.monitors.values()
        )

    def accepts(self, advert: ParsedAdvert, rssi: int) -> bool:
        for session in self.sessions:
            f = self.filters.get(session, DiscoveryFilter())
            if f.rssi is not None and rssi < f.rssi:
                continue
            if f.uuids is not None:
                have = {u.full for u in advert.service_uuids} | {u.full for u, _ in advert.service_data}
                if not have & f.uuids:
                    continue
            return True
        return any(
            m.patterns is not None and matches_or_patterns(advert.payload, m.patterns) for m in self.monitors.values()
        )


def random_nrpa() -> str:
    """A non-resolvable private address: top two bits 00, the other 46 bits random, not all 0 or all 1."""
    while True:
        raw = bytearray(secrets.token_bytes(6))
        raw[0] &= 0x3F
        rest = int.from_bytes(raw, "big")
        if rest not in (0, (1 << 46) - 1):
            return ":".join(f"{b:02X}" for b in raw)


class SimBluez:
    def __init__(
        self,
        bus: MessageBus,
        config: SimConfig,
        clock: Clock,
        real_clock: Clock,
        air_log: al.AirLogWriter | None = None,
        receive_log: al.ReceiveLog | None = None,
    ) -> None:
        self.bus = bus
        self.received = receive_log
        self.config = config
        self.clock = clock
        self.real = real_clock
        self.air = air_log
        self.table = ObjectTable(bus)
        self.rng = random.Random(config.seed)
        self.channel = None if config.radio.ideal else Channel(config.radio, config.seed)
        self.adapters: dict[str, SimAdapter] = {}
        self.removed: dict[str, AdapterConfig] = {}
        self.beacons: dict[str, Transmitter] = {}
        self.on_air: dict[str, Transmitter] = {}
        self.pending: set[tuple[str, str, str]] = set()
        self.run_token = secrets.token_hex(3)
        self.instance_counter = 0
        self.beacon_counter = 0
        self.floods: dict[str, Flood] = {}
        self.ticks = 0
        self.congested_ticks = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.hung = False
        self.held: list[Message] = []
        self.to_drop: dict[str, int] = {}
        self.dropped_calls = 0
        self.table.add_setter(ADAPTER1, "Powered", self._set_powered)

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        tolerate_full_socket(self.bus)
        self.bus.add_message_handler(self.handle)
        await self._add_match(
            f"type='signal',sender='{BUS_DAEMON}',interface='{BUS_DAEMON}',member='{NAME_OWNER_CHANGED}'"
        )
        self.table.add(CONTROL_PATH, {CONTROL: {"Run": Variant("s", self.run_token)}})
        for cfg in self.config.adapters:
            self._add_adapter(cfg)
        self._log({"e": "start", "t": self.clock.now(), "run": self.run_token, "pid": os.getpid()})

    async def run_air(self) -> None:
        """The air tick: real time, so an accelerated run still delivers at a rate D-Bus and bleak can take."""
        t0 = self.clock.now()
        next_expiry = self.real.now() + 1.0
        while True:
            await self.real.sleep(self.config.tick_seconds)
            t1 = self.clock.now()
            self.tick(t0, t1)
            t0 = t1
            if self.real.now() >= next_expiry:
                self.expire_devices()
                next_expiry = self.real.now() + 1.0

    async def shutdown(self) -> None:
        """Like bluetoothd stopping: adverts released, devices and adapters removed."""
        for name in list(self.adapters):
            self._remove_adapter(name, al.END_SERVICE_STOP)
        for beacon in list(self.beacons.values()):
            self._off_air(beacon, al.END_SERVICE_STOP)
        self._log({"e": "stop", "t": self.clock.now(), "run": self.run_token})
        for task in list(self.tasks):
            task.cancel()

    # ---- dispatch --------------------------------------------------------------------------------------

    def handle(self, msg: Message) -> bool:
        if msg.message_type is MessageType.SIGNAL:
            self._on_signal(msg)
            return False
        if msg.message_type is not MessageType.METHOD_CALL:
            return False
        control = msg.interface == CONTROL and msg.path == CONTROL_PATH
        if self.hung and not control:
            self.held.append(msg)
            return True
        if not control and self.to_drop.get(msg.member or "", 0) > 0:
            self.to_drop[msg.member or ""] -= 1
            self.dropped_calls += 1
            return True
        try:
            if self.table.handle(msg):
                return True
            if msg.interface == CONTROL and msg.path == CONTROL_PATH:
                return self._control(msg)
            adapter = self.adapters.get((msg.path or "").removeprefix(ADAPTER_PREFIX))
            if adapter is None or msg.path != adapter.path:
                return False
            if msg.member in FAULTABLE:
                queue = adapter.faults.get(msg.member)
                if queue:
                    error = queue.popleft()
                    raise CallError(error, f"injected failure of {msg.member}")
            if msg.interface == ADAPTER1:
                return self._adapter_call(adapter, msg)
            if msg.interface == ADV_MANAGER:
                return self._adv_manager_call(adapter, msg)
            if msg.interface == MONITOR_MANAGER and adapter.cfg.experimental:
                return self._monitor_manager_call(adapter, msg)
        except CallError as exc:
            self.bus.send(Message.new_error(msg, exc.name, exc.text))
            return True
        return False

    def _reply(self, msg: Message, signature: str = "", body: list[Any] | None = None) -> bool:
        self.bus.send(Message.new_method_return(msg, signature, body or []))
        return True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _add_match(self, rule: str) -> None:
        await self.bus.call(
            Message(
                destination=BUS_DAEMON,
                path=BUS_DAEMON_PATH,
                interface=BUS_DAEMON,
                member=ADD_MATCH,
                signature="s",
                body=[rule],
            )
        )

    def _remove_match(self, rule: str) -> None:
        self.bus.send(
            Message(
                destination=BUS_DAEMON,
                path=BUS_DAEMON_PATH,
                interface=BUS_DAEMON,
                member=REMOVE_MATCH,
                signature="s",
                body=[rule],
                flags=MessageFlag.NO_REPLY_EXPECTED,
            )
        )

    # ---- adapters --------------------------------------------------------------------------------------

    def _adapter_props(self, a: SimAdapter) -> dict[str, Variant]:
        return {
            "Address": Variant("s", a.cfg.address),
            "AddressType": Variant("s", "public"),
            "Name": Variant("s", f"proxitrace-sim-{a.name}"),
            "Alias": Variant("s", f"proxitrace-sim-{a.name}"),
            "Class": Variant("u", 0),
            "Powered": Variant("b", a.powered),
            "PowerState": Variant("s", "on" if a.powered else "off"),
            "Discoverable": Variant("b", False),
            "DiscoverableTimeout": Variant("u", 180),
            "Pairable": Variant("b", False),
            "PairableTimeout": Variant("u", 0),
            "Discovering": Variant("b", a.discovering),
            "UUIDs": Variant("as", []),
            "Modalias": Variant("s", "usb:v1D6Bp0246d0542"),
            "Roles": Variant("as", ["central", "peripheral"]),
        }

    def _adv_manager_props(self, a: SimAdapter) -> dict[str, Variant]:
        """As bluetoothd 5.66 answers: SupportedSecondaryChannels only for extended advertising, and
        SupportedFeatures (experimental before 5.77) only when running with --experimental."""
        props = {
            "ActiveInstances": Variant("y", len(a.adverts)),
            SUPPORTED_INSTANCES: Variant("y", max(0, a.cfg.max_advertisements - len(a.adverts))),
            "SupportedIncludes": Variant("as", ["tx-power", "appearance", "local-name"]),
            "SupportedCapabilities": Variant(
                "a{sv}", {"MaxAdvLen": Variant("y", 31), "MaxScnRspLen": Variant("y", 31)}
            ),
        }
        if a.cfg.extended:
            props[SUPPORTED_SECONDARY_CHANNELS] = Variant("as", [SECONDARY_1M, SECONDARY_2M])
        if a.cfg.experimental:
            props[SUPPORTED_FEATURES] = Variant("as", [CAN_SET_TX_POWER, HARDWARE_OFFLOAD] if a.cfg.extended else [])
        return props

    def _add_adapter(self, cfg: AdapterConfig) -> SimAdapter:
        if cfg.name in self.adapters:
            raise CallError(E_CONTROL, f"adapter {cfg.name} exists")
        a = SimAdapter(cfg=cfg, legacy=cfg.legacy, powered=cfg.powered, track=cfg.track)
        self.adapters[cfg.name] = a
        self.removed.pop(cfg.name, None)
        ifaces = {ADAPTER1: self._adapter_props(a), ADV_MANAGER: self._adv_manager_props(a)}
        if cfg.experimental:
            ifaces[MONITOR_MANAGER] = {
                "SupportedMonitorTypes": Variant("as", ["or_patterns"]),
                SUPPORTED_FEATURES: Variant("as", []),
            }
        self.table.add(a.path, ifaces)
        return a

    def _remove_adapter(self, name: str, why: str) -> None:
        a = self.adapters.pop(name)
        for tx in list(a.adverts.values()):
            self._release(tx)
            self._drop_advert(a, tx, why)
        for dev in list(a.devices.values()):
            self.table.remove(dev.path)
        a.devices.clear()
        self.table.remove(a.path)
        self.removed[name] = AdapterConfig(
            name=a.cfg.name,
            address=a.cfg.address,
            track=a.track,
            legacy=a.legacy,
            extended=a.cfg.extended,
            tx_power=a.cfg.tx_power,
            adv_interval_ms=a.cfg.adv_interval_ms,
            max_advertisements=a.cfg.max_advertisements,
            experimental=a.cfg.experimental,
        )

    def _release(self, tx: Transmitter) -> None:
        """bluetoothd calls Release on adverts it drops by itself (adapter gone, daemon stopping)."""
        if not tx.owner:
            return
        self.bus.send(
            Message(
                destination=tx.owner,
                path=tx.path,
                interface=ADVERTISEMENT1,
                member=RELEASE,
                flags=MessageFlag.NO_REPLY_EXPECTED,
            )
        )

    def _set_discovering(self, a: SimAdapter, was: bool) -> None:
        if a.discovering != was:
            self.table.update(a.path, ADAPTER1, {"Discovering": Variant("b", a.discovering)})

    def _set_powered(self, path: str, value: Variant) -> tuple[str, str] | None:
        a = self.adapters.get(path.removeprefix(ADAPTER_PREFIX))
        if a is None:
            return (E_DOES_NOT_EXIST, "No such adapter")
        on = bool(value.value)
        if on == a.powered:
            return None
        was = a.discovering
        a.powered = on
        if not on:
            a.sessions.clear()
            for tx in a.adverts.values():
                self._off_air(tx, al.END_POWERED_OFF)
            for dev in list(a.devices.values()):
                self.table.remove(dev.path)
            a.devices.clear()
        self._set_discovering(a, was)
        self.table.update(
            a.path, ADAPTER1, {"Powered": Variant("b", on), "PowerState": Variant("s", "on" if on else "off")}
        )
        if on:
            for tx in a.adverts.values():
                self._put_on_air(a, tx)
        return None

    def _adapter_call(self, a: SimAdapter, msg: Message) -> bool:
        member, sig, sender = msg.member, msg.signature, msg.sender or ""
        if member == SET_DISCOVERY_FILTER and sig == "a{sv}":
            a.filters[sender] = _parse_filter(msg.body[0])
            return self._reply(msg)
        if member == START_DISCOVERY and sig == "":
            if not a.powered:
                raise CallError(E_NOT_READY, "Resource Not Ready")
            if sender in a.sessions:
                raise CallError(E_IN_PROGRESS, "Operation already in progress")
            was = a.discovering
            if not was:
                a.stalled = False  # a stuck controller recovers when scanning is restarted
            a.sessions.add(sender)
            a.discovery_starts += 1
            self._set_discovering(a, was)
            return self._reply(msg)
        if member == STOP_DISCOVERY and sig == "":
            if sender not in a.sessions:
                raise CallError(E_FAILED, "No discovery started")
            was = a.discovering
            a.sessions.discard(sender)
            self._set_discovering(a, was)
            return self._reply(msg)
        if member == REMOVE_DEVICE and sig == "o":
            # the path names the address (dev_XX_XX_...): one lookup, as a flood removes thousands a second
            address = msg.body[0].rpartition("/dev_")[2].replace("_", ":")
            dev = a.devices.get(address)
            if dev is None or dev.path != msg.body[0]:
                raise CallError(E_DOES_NOT_EXIST, "Does Not Exist")
            self.table.remove(a.devices.pop(address).path)
            return self._reply(msg)
        if member == "GetDiscoveryFilters" and sig == "":
            return self._reply(
                msg, "as", [["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable", "Pattern"]]
            )
        return False

    # ---- advertising -----------------------------------------------------------------------------------

    def _adv_manager_call(self, a: SimAdapter, msg: Message) -> bool:
        sender = msg.sender or ""
        if msg.member == REGISTER_ADVERTISEMENT and msg.signature == "oa{sv}":
            key = (sender, msg.body[0])
            if key in a.adverts or (a.name, *key) in self.pending:
                a.refused_registrations += 1
                raise CallError(E_ALREADY_EXISTS, "Already Exists")
            if len(a.adverts) >= a.cfg.max_advertisements:
                a.refused_registrations += 1
                raise CallError(E_NOT_PERMITTED, "Maximum advertisements reached")
            self.pending.add((a.name, *key))
            self._spawn(self._register(a, msg))
            return True
        if msg.member == UNREGISTER_ADVERTISEMENT and msg.signature == "o":
            tx = a.adverts.get((sender, msg.body[0]))
            if tx is None:
                raise CallError(E_DOES_NOT_EXIST, "Does Not Exist")
            self._drop_advert(a, tx, al.END_UNREGISTERED)
            return self._reply(msg)
        return False

    async def _register(self, a: SimAdapter, msg: Message) -> None:
        sender, path = msg.sender or "", msg.body[0]
        try:
            reply = await asyncio.wait_for(
                self.bus.call(
                    Message(
                        destination=sender,
                        path=path,
                        interface=PROPERTIES,
                        member=GET_ALL,
                        signature="s",
                        body=[ADVERTISEMENT1],
                    )
                ),
                CALLBACK_TIMEOUT_S,
            )
        except (TimeoutError, Exception) as exc:  # the client vanished or never answered
            log.info("registration on %s: could not read the advertisement (%s)", a.name, type(exc).__name__)
            reply = None
        finally:
            self.pending.discard((a.name, sender, path))
        if reply is None or self.adapters.get(a.name) is not a:
            self.bus.send(Message.new_error(msg, E_FAILED, "Failed to register advertisement"))
            return
        if reply.message_type is MessageType.ERROR or reply.signature != "a{sv}":
            self.bus.send(Message.new_error(msg, E_FAILED, "Failed to parse advertisement."))
            return
        try:
            parsed = parse_advertisement(reply.body[0])
        except AdvertError as exc:
            log.info("registration on %s rejected: %s", a.name, exc)
            self.bus.send(Message.new_error(msg, E_FAILED, "Failed to parse advertisement."))
            return
        tx = Transmitter(
            owner=sender,
            path=path,
            adapter=a.name,
            advert=parsed,
            raw_props=dict(reply.body[0]),
            tx_power=parsed.tx_power if parsed.tx_power is not None else a.cfg.tx_power,
            interval_s=(parsed.interval_ms or a.cfg.adv_interval_ms) / 1000.0,
        )
        tx.match_rule = (
            f"type='signal',sender='{sender}',path='{path}',interface='{PROPERTIES}',member='{PROPERTIES_CHANGED}'"
        )
        try:  # follow in-place updates from before the reply, as bluetoothd's property watch does
            await self._add_match(tx.match_rule)
        except Exception:  # only in-place updates would be missed; the registration itself stands
            log.debug("AddMatch for advert updates failed", exc_info=True)
        if self.adapters.get(a.name) is not a:
            self.bus.send(Message.new_error(msg, E_FAILED, "Failed to register advertisement"))
            return
        a.adverts[(sender, path)] = tx
        a.registrations += 1
        self._update_instances(a)
        self.bus.send(Message.new_method_return(msg))
        self._put_on_air(a, tx)

    def _update_instances(self, a: SimAdapter) -> None:
        props = self._adv_manager_props(a)
        self.table.update(
            a.path,
            ADV_MANAGER,
            {"ActiveInstances": props["ActiveInstances"], SUPPORTED_INSTANCES: props[SUPPORTED_INSTANCES]},
        )

    def _drop_advert(self, a: SimAdapter, tx: Transmitter, why: str) -> None:
        self._off_air(tx, why)
        a.adverts.pop((tx.owner, tx.path), None)
        if tx.match_rule:
            self._remove_match(tx.match_rule)
        if a.name in self.adapters:
            self._update_instances(a)

    def _put_on_air(self, a: SimAdapter, tx: Transmitter) -> None:
        if not a.powered or tx.instance is not None:
            return
        if a.legacy and a.scanning:
            a.refused_while_scanning += 1
            self._log({"e": "refused", "t": self.clock.now(), "a": a.name, "why": "legacy adapter is scanning"})
            log.info("%s: legacy controller is scanning, new advertisement stays off", a.name)
            return
        shared = None if a.cfg.extended else next((t.address for t in a.adverts.values() if t.address), None)
        self._start_instance(tx, shared or random_nrpa())

    def _start_instance(self, tx: Transmitter, address: str) -> None:
        self.instance_counter += 1
        tx.address = address
        tx.instance = f"{self.run_token}.{self.instance_counter}"
        now = self.clock.now()
        tx.next_event = now
        tx.events = 0
        tx.reports = 0
        self.on_air[tx.instance] = tx
        self._log(
            {
                "e": "on",
                "t": now,
                "i": tx.instance,
                "a": tx.label,
                "addr": address,
                "sd": {u.full: d.hex() for u, d in tx.advert.service_data},
                "uuids": [u.full for u in tx.advert.service_uuids],
                "tx": tx.tx_power if tx.advert.include_tx_power else None,
            }
        )

    def _off_air(self, tx: Transmitter, why: str) -> None:
        if tx.instance is None:
            return
        now = self.clock.now()
        n, _ = advertising_events(tx.next_event, now, tx.interval_s, self.rng)
        tx.events += n
        self._log({"e": "off", "t": now, "i": tx.instance, "n": tx.events, "rx": tx.reports, "why": why})
        self.on_air.pop(tx.instance, None)
        tx.instance = None
        tx.address = None

    def _advert_changed(self, tx: Transmitter, changed: dict[str, Variant], invalidated: list[str]) -> None:
        """bluetoothd follows PropertiesChanged of a registered advert and updates it in place."""
        props = {**tx.raw_props, **changed}
        for name in invalidated:
            props.pop(name, None)
        try:
            parsed = parse_advertisement(props)
        except AdvertError as exc:
            log.info("in-place advert update ignored: %s", exc)
            return
        tx.raw_props = props
        tx.advert = parsed
        if tx.instance is not None and tx.address is not None:
            address = tx.address
            self._off_air(tx, al.END_DATA_CHANGED)
            self._start_instance(tx, address)  # same address, new data: what a legacy controller does

    # ---- passive monitors ------------------------------------------------------------------------------

    def _monitor_manager_call(self, a: SimAdapter, msg: Message) -> bool:
        key = (msg.sender or "", msg.body[0] if msg.body else "")
        if msg.member == REGISTER_MONITOR and msg.signature == "o":
            if key in a.monitors:
                raise CallError(E_ALREADY_EXISTS, "Already Exists")
            a.monitors[key] = Monitor()
            self._spawn(self._read_monitor(a, key))
            return self._reply(msg)
        if msg.member == UNREGISTER_MONITOR and msg.signature == "o":
            if a.monitors.pop(key, None) is None:
                raise CallError(E_DOES_NOT_EXIST, "Does Not Exist")
            return self._reply(msg)
        return False

    async def _read_monitor(self, a: SimAdapter, key: tuple[str, str]) -> None:
        """Read the client's or_patterns; bleak exports the monitor only after RegisterMonitor returns."""
        owner, path = key
        for _ in range(50):
            if key not in a.monitors:
                return
            reply = await self.bus.call(
                Message(
                    destination=owner,
                    path=path,
                    interface=PROPERTIES,
                    member=GET,
                    signature="ss",
                    body=[MONITOR1, "Patterns"],
                )
            )
            if reply.message_type is MessageType.METHOD_RETURN and reply.body[0].signature == "a(yyay)":
                patterns = tuple((int(s), int(t), bytes(c)) for s, t, c in reply.body[0].value)
                if key in a.monitors:
                    a.monitors[key].patterns = patterns
                    self.bus.send(
                        Message(
                            destination=owner,
                            path=path,
                            interface=MONITOR1,
                            member="Activate",
                            flags=MessageFlag.NO_REPLY_EXPECTED,
                        )
                    )
                return
            await self.real.sleep(0.02)
        log.info("%s: monitor never answered, dropped", a.name)
        a.monitors.pop(key, None)

    # ---- signals ---------------------------------------------------------------------------------------

    def _on_signal(self, msg: Message) -> None:
        if msg.member == NAME_OWNER_CHANGED and msg.sender == BUS_DAEMON:
            name, _, new_owner = msg.body
            if name.startswith(":") and not new_owner:
                self._client_gone(name)
        elif msg.member == PROPERTIES_CHANGED and msg.body and msg.body[0] == ADVERTISEMENT1:
            for a in self.adapters.values():
                tx = a.adverts.get((msg.sender or "", msg.path or ""))
                if tx is not None:
                    self._advert_changed(tx, msg.body[1], msg.body[2])

    def _client_gone(self, owner: str) -> None:
        for a in self.adapters.values():
            for tx in [t for t in a.adverts.values() if t.owner == owner]:
                log.info("%s: client vanished, dropping its advertisement", a.name)
                self._drop_advert(a, tx, al.END_CLIENT_GONE)
            was = a.discovering
            a.sessions.discard(owner)
            a.filters.pop(owner, None)
            for key in [k for k in a.monitors if k[0] == owner]:
                del a.monitors[key]
            self._set_discovering(a, was)

    # ---- the air ---------------------------------------------------------------------------------------

    def tick(self, t0: float, t1: float) -> None:
        self.ticks += 1
        if self.hung:
            return
        params = self.config.radio
        receivers = [a for a in self.adapters.values() if a.powered and a.scanning and not a.stalled]
        if send_backlog(self.bus) > MAX_SEND_BACKLOG:
            receivers = []  # the bus cannot take more: this tick's reports are lost, as in a saturated host
            self.congested_ticks += 1
        positions = {a.name: a.track.position_at(t1) for a in self.adapters.values()}
        for tx in list(self.on_air.values()):
            n, tx.next_event = advertising_events(tx.next_event, t1, tx.interval_s, self.rng)
            if not n:
                continue
            tx.events += n
            if tx.adapter is not None:
                src = positions[tx.adapter]
            else:
                assert tx.track is not None
                src = tx.track.position_at(t1)
            for rx in receivers:
                if rx.name == tx.adapter:
                    continue
                d = distance(src, positions[rx.name])
                if self.channel is None:
                    rssi = sample_rssi(tx.tx_power, d, params, self.rng)
                else:
                    rssi = self.channel.sample(tx.adapter or tx.path, rx.name, tx.tx_power, d, t1, self.rng)
                if rssi is None or not rx.accepts(tx.advert, rssi):
                    continue
                if self._deliver(rx, tx, rssi) and self.received is not None and tx.adapter is not None:
                    self.received.write(t1, rx.name, tx.adapter, rssi, tx.tx_power, d)
                tx.reports += 1
                rx.reports_received += 1
        for flood in self.floods.values():
            self._spray(flood, t1 - t0, receivers, positions)

    def _spray(
        self, flood: Flood, dt: float, receivers: list[SimAdapter], positions: dict[str, tuple[float, float]]
    ) -> None:
        """This tick's fresh fakes: each a new Device1 on every receiver in range, never heard again."""
        due = flood.rate * dt + flood.carry
        n = int(due)
        flood.carry = due - n
        if not receivers:
            flood.lost += n
            return
        params = self.config.radio
        now = self.real.now()
        for rx in receivers:
            d = distance((flood.x, flood.y), positions[rx.name])
            for _ in range(n):
                rssi = sample_rssi(flood.tx_power, d, params, self.rng)
                if rssi is None or not rx.accepts(flood.advert, rssi):
                    continue
                raw = (self.rng.getrandbits(46) | 1).to_bytes(6, "big")  # a fresh NRPA: top bits 00, never 0
                address = ":".join(f"{b:02X}" for b in raw)
                path = f"{rx.path}/dev_{address.replace(':', '_')}"
                data = self.rng.randbytes(flood.data_len)
                self.table.add(
                    path,
                    {
                        DEVICE1: {
                            "Address": Variant("s", address),
                            "AddressType": Variant("s", "random"),
                            "Alias": Variant("s", address.replace(":", "-")),
                            "Paired": Variant("b", False),
                            "Bonded": Variant("b", False),
                            "Trusted": Variant("b", False),
                            "Blocked": Variant("b", False),
                            "LegacyPairing": Variant("b", False),
                            "Connected": Variant("b", False),
                            "ServicesResolved": Variant("b", False),
                            "Adapter": Variant("o", rx.path),
                            "RSSI": Variant("n", rssi),
                            "UUIDs": Variant("as", [u.full for u in flood.advert.service_uuids]),
                            "ServiceData": Variant("a{sv}", {flood.uuid: Variant("ay", data)}),
                        }
                    },
                )
                rx.devices[address] = SeenDevice(path, None, now)
                rx.reports_received += 1
                flood.sent += 1

    def _device_props(self, rx: SimAdapter, tx: Transmitter, rssi: int) -> dict[str, Variant]:
        assert tx.address is not None
        props = {
            "Address": Variant("s", tx.address),
            "AddressType": Variant("s", "random"),
            "Alias": Variant("s", tx.address.replace(":", "-")),
            "Paired": Variant("b", False),
            "Bonded": Variant("b", False),
            "Trusted": Variant("b", False),
            "Blocked": Variant("b", False),
            "LegacyPairing": Variant("b", False),
            "Connected": Variant("b", False),
            "ServicesResolved": Variant("b", False),
            "Adapter": Variant("o", rx.path),
            "RSSI": Variant("n", rssi),
        }
        props.update(self._advert_props(tx))
        return props

    @staticmethod
    def _advert_props(tx: Transmitter) -> dict[str, Variant]:
        adv = tx.advert
        props = {
            "UUIDs": Variant("as", [u.full for u in adv.service_uuids]),
            "ServiceData": Variant("a{sv}", {u.full: Variant("ay", d) for u, d in adv.service_data}),
        }
        if adv.manufacturer_data:
            props["ManufacturerData"] = Variant("a{qv}", {c: Variant("ay", d) for c, d in adv.manufacturer_data})
        if adv.include_tx_power:
            props["TxPower"] = Variant("n", tx.tx_power)
        return props

    def _deliver(self, rx: SimAdapter, tx: Transmitter, rssi: int) -> bool:
        """Hand the report to the receiver's BlueZ objects; True when a D-Bus update went out (what the
        scanner then sees), False when BlueZ would merge it away (a duplicate without duplicate data)."""
        assert tx.address is not None
        now = self.real.now()
        dev = rx.devices.get(tx.address)
        if dev is None:
            path = f"{rx.path}/dev_{tx.address.replace(':', '_')}"
            self.table.add(path, {DEVICE1: self._device_props(rx, tx, rssi)})
            rx.devices[tx.address] = SeenDevice(path, tx.instance, now)
            return True
        dev.last_seen = now
        if dev.instance != tx.instance:
            dev.instance = tx.instance
            self.table.update(dev.path, DEVICE1, {"RSSI": Variant("n", rssi), **self._advert_props(tx)})
            return True
        if rx.wants_duplicates():
            self.table.update(dev.path, DEVICE1, {"RSSI": Variant("n", rssi)})
            return True
        return False

    def expire_devices(self) -> None:
        limit = self.real.now() - self.config.device_timeout_seconds
        for a in self.adapters.values():
            for address in [k for k, d in a.devices.items() if d.last_seen < limit]:
                self.table.remove(a.devices.pop(address).path)

    def _log(self, record: dict[str, Any]) -> None:
        if self.air is not None:
            self.air.write(record)

    # ---- test control ----------------------------------------------------------------------------------

    def _control(self, msg: Message) -> bool:
        member, sig, body = msg.member, msg.signature, msg.body
        if member == "GetStats" and sig == "":
            return self._reply(msg, "s", [json.dumps(self.stats())])
        if member == "AddAdapter" and sig == "ss":
            self._add_adapter(self._adapter_options(body[0], body[1]))
            return self._reply(msg)
        if member == "RemoveAdapter" and sig == "s":
            self._adapter(body[0])
            self._remove_adapter(body[0], al.END_ADAPTER_REMOVED)
            return self._reply(msg)
        if member == "SetPosition" and sig == "sdd":
            self._adapter(body[0]).track = Track.fixed(body[1], body[2])
            return self._reply(msg)
        if member == "SetLegacy" and sig == "sb":
            self._adapter(body[0]).legacy = body[1]
            return self._reply(msg)
        if member == "Hang" and sig == "":
            self.hung = True
            return self._reply(msg)
        if member == "Resume" and sig == "":
            self.hung = False
            held, self.held = self.held, []
            for call in held:
                if not self.handle(call):
                    self.bus.send(Message.new_error(call, E_UNKNOWN_METHOD, "unknown"))
            return self._reply(msg)
        if member == "DropNext" and sig == "su":
            self.to_drop[body[0]] = self.to_drop.get(body[0], 0) + body[1]
            return self._reply(msg)
        if member == "Stall" and sig == "s":
            self._adapter(body[0]).stalled = True
            return self._reply(msg)
        if member == "FailNext" and sig == "sssu":
            if body[1] not in FAULTABLE:
                raise CallError(E_CONTROL, f"cannot inject failures into {body[1]}")
            queue = self._adapter(body[0]).faults.setdefault(body[1], deque())
            queue.extend([body[2]] * body[3])
            return self._reply(msg)
        if member == "InjectDevice" and sig == "ssa{sv}":
            return self._reply(msg, "o", [self._inject(body[0], body[1], body[2])])
        if member == "InjectProperties" and sig == "oa{sv}":
            self.table.emit_properties_changed(body[0], DEVICE1, body[1])
            return self._reply(msg)
        if member == "InjectRemove" and sig == "o":
            self.table.emit_interfaces_removed(body[0], [DEVICE1])
            return self._reply(msg)
        if member == "AddBeacon" and sig == "s":
            return self._reply(msg, "s", [self._add_beacon(body[0])])
        if member == "AddFlood" and sig == "s":
            return self._reply(msg, "s", [self._add_flood(body[0])])
        if member == "RemoveFlood" and sig == "s":
            if self.floods.pop(body[0], None) is None:
                raise CallError(E_CONTROL, f"no flood {body[0]}")
            return self._reply(msg)
        if member == "RemoveBeacon" and sig == "s":
            beacon = self.beacons.pop(body[0], None)
            if beacon is None:
                raise CallError(E_CONTROL, f"no beacon {body[0]}")
            self._off_air(beacon, al.END_UNREGISTERED)
            return self._reply(msg)
        raise CallError(E_CONTROL, f"{member}({sig}) is not a control method")

    def _adapter(self, name: str) -> SimAdapter:
        a = self.adapters.get(name)
        if a is None:
            raise CallError(E_CONTROL, f"no adapter {name}")
        return a

    def _adapter_options(self, name: str, options: str) -> AdapterConfig:
        if not options and name in self.removed:
            return self.removed[name]
        try:
            raw = json.loads(options) if options else {}
            if not isinstance(raw, dict):
                raise SimConfigError("options: expected a JSON object")
            return adapter_config_from_dict({**raw, "name": name}, "options")
        except (ValueError, SimConfigError) as exc:
            raise CallError(E_CONTROL, str(exc)) from None

    def _inject(self, adapter: str, address: str, props: dict[str, Variant]) -> str:
        """A Device1 straight from 'BlueZ', with whatever properties the test hands in: hostile input."""
        a = self._adapter(adapter)
        path = f"{a.path}/dev_{address.replace(':', '_')}"
        base = {
            "Adapter": Variant("o", a.path),
            "Address": Variant("s", address),
            "Alias": Variant("s", address.replace(":", "-")),
        }
        self.table.emit_interfaces_added(path, {DEVICE1: {**base, **props}})
        return path

    def _add_beacon(self, options: str) -> str:
        try:
            raw = json.loads(options)
            sd = {parse_uuid(u): bytes.fromhex(h) for u, h in raw.get("service_data", {}).items()}
            uuids = tuple(parse_uuid(u) for u in raw.get("uuids", []))
            props: dict[str, Variant] = {
                "Type": Variant("s", "broadcast"),
                "ServiceUUIDs": Variant("as", [u.full for u in uuids]),
                "ServiceData": Variant("a{sv}", {u.full: Variant("ay", d) for u, d in sd.items()}),
                "Includes": Variant("as", ["tx-power"] if raw.get("include_tx_power") else []),
            }
            parsed = parse_advertisement(props)
            track = Track.fixed(float(raw.get("x", 0.0)), float(raw.get("y", 0.0)))
            tx_power = int(raw.get("tx_power", 0))
            interval = float(raw.get("interval_ms", 100)) / 1000.0
        except (ValueError, TypeError, AttributeError, AdvertError) as exc:
            raise CallError(E_CONTROL, f"bad beacon: {exc}") from None
        self.beacon_counter += 1
        ident = f"b{self.beacon_counter}"
        beacon = Transmitter("", ident, None, parsed, props, tx_power, interval, track=track)
        self.beacons[ident] = beacon
        self._start_instance(beacon, random_nrpa())
        return ident

    def _add_flood(self, options: str) -> str:
        try:
            raw = json.loads(options)
            uuid = parse_uuid(raw.get("uuid", "fd6f"))
            data_len = int(raw.get("data_len", 20))
            rate = float(raw["rate"])
            if not 0 < rate <= 1_000_000 or not 0 < data_len <= 27:
                raise ValueError("rate must be in (0, 1e6] and data_len in 1..27")
            props: dict[str, Variant] = {
                "Type": Variant("s", "broadcast"),
                "ServiceUUIDs": Variant("as", [uuid.full]),
                "ServiceData": Variant("a{sv}", {uuid.full: Variant("ay", bytes(data_len))}),
            }
            parsed = parse_advertisement(props)
            flood = Flood(
                ident=f"f{len(self.floods) + 1}",
                advert=parsed,
                uuid=uuid.full,
                data_len=data_len,
                rate=rate,
                x=float(raw.get("x", 0.0)),
                y=float(raw.get("y", 0.0)),
                tx_power=int(raw.get("tx_power", 0)),
            )
        except (ValueError, TypeError, KeyError, AttributeError, AdvertError) as exc:
            raise CallError(E_CONTROL, f"bad flood: {exc}") from None
        while flood.ident in self.floods:
            flood.ident += "+"
        self.floods[flood.ident] = flood
        return flood.ident

    def stats(self) -> dict[str, Any]:
        return {
            "t": self.clock.now(),
            "run": self.run_token,
            "ticks": self.ticks,
            "congested_ticks": self.congested_ticks,
            "beacons": len(self.beacons),
            "floods": {f.ident: {"sent": f.sent, "lost": f.lost} for f in self.floods.values()},
            "hung": self.hung,
            "dropped_calls": self.dropped_calls,
            "held_calls": len(self.held),
            "adapters": {
                a.name: {
                    "powered": a.powered,
                    "discovering": a.discovering,
                    "scanning": a.scanning,
                    "legacy": a.legacy,
                    "stalled": a.stalled,
                    "position": list(a.track.position_at(self.clock.now())),
                    "registered": len(a.adverts),
                    "advertising": any(t.instance is not None for t in a.adverts.values()),
                    "on_air": [
                        {"address": t.address, "service_data": {u.full: d.hex() for u, d in t.advert.service_data}}
                        for t in a.adverts.values()
                        if t.instance is not None
                    ],
                    "registrations": a.registrations,
                    "refused_registrations": a.refused_registrations,
                    "refused_while_scanning": a.refused_while_scanning,
                    "discovery_starts": a.discovery_starts,
                    "reports_received": a.reports_received,
                    "devices": len(a.devices),
                    "monitors": sum(1 for m in a.monitors.values() if m.patterns is not None),
                }
                for a in self.adapters.values()
            },
        }


def _parse_filter(raw: dict[str, Variant]) -> DiscoveryFilter:
    expected = {
        "UUIDs": "as",
        "RSSI": "n",
        "Pathloss": "q",
        "Transport": "s",
        "DuplicateData": "b",
        "Discoverable": "b",
        "Pattern": "s",
    }
    for key, value in raw.items():
        want = expected.get(key)
        if want is None or value.signature not in (want, "n" if key == "Pathloss" else want):
            raise CallError(E_INVALID_ARGUMENTS, "Invalid arguments in method call")
    uuids = None
    if "UUIDs" in raw:
        try:
            uuids = frozenset(parse_uuid(u).full for u in raw["UUIDs"].value)
        except AdvertError:
            raise CallError(E_INVALID_ARGUMENTS, "Invalid arguments in method call") from None
    return DiscoveryFilter(
        duplicates=bool(raw["DuplicateData"].value) if "DuplicateData" in raw else False,
        uuids=uuids or None,
        rssi=int(raw["RSSI"].value) if "RSSI" in raw else None,
    )
