"""Broadcast the live ephemeral ID, and rotate ID and address together.

With Privacy off, the kernel gives a non-connectable advertising instance a fresh non-resolvable private
address each time it is set up, so one rotation is: pause scanning on this controller → unregister →
register the new service data → resume scanning. Updating the data in place would send the new ID under the
old address for a moment (linking them), and a legacy controller (the Pi's) refuses the address change while
it scans, leaving advertising silently off — hence the pause.

Rotation happens at the live ID's ``valid_until`` and only then: the address lives exactly as long as its
ID. Changing the address in between (as earlier versions did for IDs living over 20 min) would put one ID
under two addresses and gain nothing, since the ID links them anyway. Failures (BlueZ gone, adapter gone,
registration refused) are retried with backoff and reported in health; the loop never ends on its own.
A refusal (NotPermitted, InvalidArguments: BlueZ will say the same next second) backs off from
``REFUSED_BACKOFF_S`` up to ``REFUSED_BACKOFF_MAX_S``, not from 1 s, so an agent refused for a week asks a
few hundred times rather than tens of thousands.

**Make-before-break on extended advertising.** A controller driven with extended advertising gives every advertising
instance its own advertising set, and the kernel gives every set its own random address (LE Set Advertising Set
Random Address, per handle). There a rotation registers the new ID under a second object path (the two paths
alternate), waits for BlueZ's reply, and only then unregisters the old one: for one D-Bus round trip both sets are
on air, each pairing its own address with its own ID, and the air is never empty. No scan pause is needed: the
per-set address command is allowed while scanning, unlike the controller-wide LE Set Random Address a legacy
controller refuses. The advertiser asks ``LEAdvertisingManager1`` right after each registration, in the background,
and the next rotation acts on that answer: asking at the rotation itself would keep the expired ID on air for one
more round trip (ten seconds if bluetoothd is slow to answer). The answer is kept per BlueZ generation; a new
bluetoothd is asked afresh before its first rotation. It wants ``SupportedFeatures``
containing ``HardwareOffload`` (BlueZ's src/advertising.c lists it when the kernel reports MGMT_ADV_FLAG_HW_OFFLOAD,
and net/bluetooth/mgmt.c ``get_supported_adv_flags`` sets that flag exactly when it drives the controller with
extended advertising) — or, since BlueZ before 5.77 (bookworm's 5.66) exposes SupportedFeatures only with
``--experimental``, ``SupportedSecondaryChannels`` containing ``1M``, which BlueZ exposes only for
MGMT_ADV_FLAG_SEC_1M, set in the same extended-advertising branch of the kernel — and ``SupportedInstances``, the
instances still *free*, at least 1 beside ours. Anything else, an unreadable answer included, takes the pause path:
a legacy controller's multi-advertising is the kernel rotating instances in software under one controller address,
so overlapping there would put the new ID under the old address. Failure path: the rotation runs at the old ID's
``valid_until``, so if the new registration fails the old advert is unregistered at once all the same (the address
never outlives its ID by more than that one call) and the failure is retried with backoff, off air meanwhile —
except when BlueZ refused it for want of an instance (another program took the free one since we asked): then the
instance the old advert leaves is free, and the new advert is registered there at once, break-before-make. If
unregistering the old one fails, the new one stays on air and the old one is retried with backoff before anything
else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from dbus_fast import DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from agent.aio import first, within
from agent.backoff import backoff_delay
from agent.ble.advertisement import Advertisement
from agent.ble.bluez_watch import BluezState, BluezWatch
from agent.ble.errors import ErrorKind, classify, dbus_error_name, describe
from agent.ble.names import (
    ADAPTER_PREFIX,
    ADV_MANAGER,
    BLUEZ,
    E_ALREADY_EXISTS,
    E_DBUS_FAILED,
    E_DOES_NOT_EXIST,
    E_NOT_PERMITTED,
    GET_ALL,
    HARDWARE_OFFLOAD,
    PROPERTIES,
    REGISTER_ADVERTISEMENT,
    SECONDARY_1M,
    SUPPORTED_FEATURES,
    SUPPORTED_INSTANCES,
    SUPPORTED_SECONDARY_CHANNELS,
    UNREGISTER_ADVERTISEMENT,
)
from agent.clock import Clock, SystemClock
from agent.schemes.base import Broadcast, Scheme

log = logging.getLogger(__name__)

REFUSED_BACKOFF_S = 30.0
REFUSED_BACKOFF_MAX_S = 600.0


class ScanPauser(Protocol):
    """The scanner side of a rotation: scanning on ``adapter`` is stopped inside the context."""

    def paused(self, adapter: str) -> AbstractAsyncContextManager[None]: ...


@dataclass(frozen=True)
class AdvertisingCapability:
    """What LEAdvertisingManager1 says about the controller while our advert is registered."""

    hardware_offload: bool  # extended advertising: one set, with its own address, per instance
    free_instances: int  # SupportedInstances: instances BlueZ can still hand out

    @property
    def overlap(self) -> bool:
        """Register the next advert before removing the live one: only with per-set addresses and room."""
        return self.hardware_offload and self.free_instances >= 1

    @classmethod
    def from_properties(cls, props: dict[str, Variant]) -> AdvertisingCapability:
        """HardwareOffload in SupportedFeatures, or (BlueZ before 5.77 hides that property unless run with
        --experimental) the 1M secondary channel, which the kernel reports for extended advertising only."""
        features = props.get(SUPPORTED_FEATURES)
        secondary = props.get(SUPPORTED_SECONDARY_CHANNELS)
        instances = props.get(SUPPORTED_INSTANCES)
        return cls(
            hardware_offload=(features is not None and HARDWARE_OFFLOAD in features.value)
            or (secondary is not None and SECONDARY_1M in secondary.value),
            free_instances=int(instances.value) if instances is not None else 0,
        )


LEGACY = AdvertisingCapability(hardware_offload=False, free_instances=0)


@dataclass(frozen=True)
class AdvertiserHealth:
    adapter: str
    advertising: bool
    last_rotation_at: float | None
    next_rotation_at: float | None
    rotations: int
    failures: int
    consecutive_failures: int
    releases: int
    bluez_generation: int
    last_error: str | None
    note: str | None
    make_before_break: bool | None = None  # how the last rotation went; None before the first one
    next_make_before_break: bool | None = None  # what the next rotation will do, as BlueZ last answered; None: unknown

    @property
    def problem(self) -> str | None:
        """What an operator needs when advertising is off: the note, the last error, how often in a row."""
        if self.advertising:
            return None
        parts = [p for p in (self.note, self.last_error) if p]
        if self.consecutive_failures:
            parts.append(f"{self.consecutive_failures} attempts in a row")
        return "; ".join(parts) or None


class Advertiser:
    def __init__(
        self,
        adapter: str,
        scheme: Scheme,
        tx_power: int,
        clock: Clock,
        *,
        io_clock: Clock | None = None,
        pauser: ScanPauser | None = None,
        include_tx_power: bool = False,
        call_timeout_s: float = 10.0,
        no_id_retry_s: float = 60.0,
        backoff_max_s: float = 60.0,
    ) -> None:
        self.adapter = adapter
        base = f"/org/proxitrace/advertisement/{adapter}"
        self.paths = (base, f"{base}_next")  # alternate on extended controllers: the old stays until the new is up
        self.path = self.paths[0]  # the live advert's path (the first one until a make-before-break rotation)
        self.tx_power = tx_power
        self._scheme = scheme
        self._clock = clock
        self._io = io_clock or SystemClock()
        self._pauser = pauser
        self._include_tx_power = include_tx_power
        self._call_timeout = call_timeout_s
        self._no_id_retry = no_id_retry_s
        self._backoff_max = backoff_max_s
        self._wake = asyncio.Event()
        self._bus: MessageBus | None = None
        self._ads: dict[str, Advertisement] = {}
        self._registered = False  # the advert at self.path is registered with BlueZ
        self._stale: set[str] = set()  # replaced adverts whose unregistration failed (or is unknown): retried first
        self._stale_attempts = 0
        self._make_before_break: bool | None = None
        self._capability_read: tuple[int, AdvertisingCapability] | None = None  # (BlueZ generation, its answer)
        self._refresh: asyncio.Task[AdvertisingCapability | None] | None = None
        self._registered_generation = -1
        self._advertising = False
        self._last_rotation: float | None = None
        self._next_rotation: float | None = None
        self._on_air: Broadcast | None = None
        self._rotations = 0
        self._failures = 0
        self._consecutive = 0
        self._releases = 0
        self._generation = 0
        self._last_error: str | None = None
        self._note: str | None = None

    def set_scheme(self, scheme: Scheme) -> None:
        """New key material (a new EBID batch, a new day key): takes effect at once."""
        self._scheme = scheme
        self._wake.set()

    def health(self) -> AdvertiserHealth:
        return AdvertiserHealth(
            adapter=self.adapter,
            advertising=self._advertising,
            last_rotation_at=self._last_rotation,
            next_rotation_at=self._next_rotation if self._advertising else None,
            rotations=self._rotations,
            failures=self._failures,
            consecutive_failures=self._consecutive,
            releases=self._releases,
            bluez_generation=self._generation,
            last_error=self._last_error,
            note=self._note,
            make_before_break=self._make_before_break,
            next_make_before_break=known.overlap if (known := self._known_capability(self._generation)) else None,
        )

    async def run(self, bus: MessageBus, watch: BluezWatch) -> None:
        """Advertise on ``bus`` until cancelled (or until the bus dies: BusLost)."""
        self._ads = {p: Advertisement(lambda p=p: self._released(p), self._include_tx_power) for p in self.paths}
        for path, ad in self._ads.items():
            bus.export(path, ad)
        self._bus = bus
        self._registered = False
        self._stale = set()
        try:
            await self._loop(watch)
        finally:
            if self._refresh is not None:
                self._refresh.cancel()
            self._advertising = False
            left = ([self.path] if self._registered else []) + sorted(self._stale)
            for path in left if bus.connected else []:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await within(self._io, 2.0, self._call(UNREGISTER_ADVERTISEMENT, "o", [path]))
            self._registered = False
            self._stale = set()
            for path, ad in self._ads.items():
                with contextlib.suppress(Exception):
                    bus.unexport(path, ad)
            self._bus = None

    async def _loop(self, watch: BluezWatch) -> None:
        while True:
            state = await watch.wait_until(lambda s: s.ready(self.adapter))
            self._generation = state.generation
            if self._registered_generation != state.generation:
                self._registered = False  # registered with a bluetoothd that has since gone
                self._stale, self._stale_attempts = set(), 0
            self._wake.clear()
            if self._stale:
                try:
                    for path in sorted(self._stale):
                        await self._unregister_path(path)
                        self._stale.discard(path)
                    self._stale_attempts = 0
                except Exception as exc:  # the live advert is fine; the replaced one must still go
                    self._cleanup_failed(exc)
                    delay = backoff_delay(self._stale_attempts, maximum=self._backoff_max)
                    await self._wait(self._io, delay, watch, state)
                    continue
            now = self._clock.now()
            live = self._scheme.broadcast_at(now, self.tx_power)
            if live is None:
                await self._stop_advertising()
                self._note = "no ID for the current time: waiting for new key material"
                await self._wait(self._io, self._no_id_retry, watch, state)
                continue
            if self._registered and self._on_air == live and self._next_rotation and now < self._next_rotation:
                # woken early (new key material that does not change what is live): the same ID must keep
                # its address, so nothing is re-registered
                await self._sleep_until(self._next_rotation, watch, state)
                continue
            try:
                await self._rotate(live, state)
            except Exception as exc:  # never crash: count it, report it, retry with backoff
                self._failed(exc)
                await self._wait(self._io, self._retry_delay(exc), watch, state)
                continue
            self._refresh = asyncio.ensure_future(self._read_capability(state.generation))
            recovered = self._consecutive > 0 or self._note is not None
            self._consecutive = 0
            self._rotations += 1
            self._last_rotation = now
            self._note = None
            self._next_rotation = live.valid_until  # the address lives exactly as long as its ID
            log.log(  # a routine rotation stays out of the journal; the first advert and recoveries do not
                logging.INFO if self._rotations == 1 or recovered else logging.DEBUG,
                "advertising on %s, next rotation in %.0f s",
                self.adapter,
                self._next_rotation - now,
            )
            if self._stale:  # a replaced advert is still registered: retry its removal soon
                await self._wait(self._io, backoff_delay(self._stale_attempts, maximum=self._backoff_max), watch, state)
                continue
            await self._sleep_until(self._next_rotation, watch, state)

    async def _rotate(self, live: Broadcast, state: BluezState) -> None:
        if self._refresh is not None:  # an answer arriving mid-rotation would count the new advert as a stranger
            self._refresh.cancel()
            self._refresh = None
        rotation = self._registered  # else the first registration (or one after an outage): nothing to overlap
        capability = LEGACY
        if rotation:
            generation = state.generation
            capability = self._known_capability(generation) or await self._read_capability(generation) or LEGACY
        overlapped = False
        if capability.overlap:
            overlapped = await self._overlap(live)
        else:
            pause = self._pauser.paused(self.adapter) if self._pauser else contextlib.nullcontext()
            async with pause:
                if self._registered:
                    self._advertising = False
                    await self._replace(self._ads[self.path], live)
                else:
                    self._ads[self.path].set_content(live.service_uuid16, live.service_data)
                    await self._register()
        if rotation:
            self._make_before_break = overlapped
        self._registered = True
        self._registered_generation = state.generation
        self._advertising = True
        self._on_air = live

    def _known_capability(self, generation: int) -> AdvertisingCapability | None:
        read = self._capability_read
        return read[1] if read is not None and read[0] == generation else None

    async def _read_capability(self, generation: int) -> AdvertisingCapability | None:
        """LEAdvertisingManager1's features and free instances, kept for ``generation``; None if unreadable
        (the last answer stays: a rotation acting on it meets whatever is wrong and reports it)."""
        try:
            reply = await self._adapter_call(PROPERTIES, GET_ALL, "s", [ADV_MANAGER])
        except Exception as exc:
            log.debug("reading advertising features of %s: %s", self.adapter, describe(exc))
            return None
        if reply.message_type is MessageType.ERROR or reply.signature != "a{sv}":
            return None
        capability = AdvertisingCapability.from_properties(reply.body[0])
        self._capability_read = (generation, capability)
        return capability

    async def _overlap(self, live: Broadcast) -> bool:
        """Register the new advert under the other path, then unregister the old one (see the module doc);
        False if it had to go the other way round for want of an instance."""
        old = self.path
        new = self.paths[1] if old == self.paths[0] else self.paths[0]
        self._ads[new].set_content(live.service_uuid16, live.service_data)
        try:
            await self._register_tracked(new)
        except BaseException as exc:
            # the old ID expired when this rotation began: its address goes now, replaced or not
            self._registered = False
            try:
                await self._unregister_path(old)
            except Exception:  # retried before anything else, with backoff
                self._stale.add(old)
                raise exc from None
            if not (isinstance(exc, DBusError) and dbus_error_name(exc) == E_NOT_PERMITTED):
                raise
            # "Maximum advertisements reached": the free instance was taken since we asked; ours is free now
            log.debug("no free advertising instance on %s: replacing the advert in place", self.adapter)
            await self._register_tracked(new)
            self.path = new
            return False
        self.path = new
        try:
            await self._unregister_path(old)
        except Exception as exc:
            self._stale.add(old)
            self._cleanup_failed(exc)
        return True

    async def _register_tracked(self, path: str) -> None:
        """Register the second path; with no answer it may yet go on air, so it is marked to be taken back."""
        try:
            await self._register_path(path)
        except BaseException as exc:
            if not isinstance(exc, DBusError):
                self._stale.add(path)
            raise

    async def _replace(self, ad: Advertisement, live: Broadcast) -> None:
        """Unregister the old advert and register the new one without waiting in between (the rotation gap).

        The Register call is sent right behind the Unregister on the same connection, and bluetoothd handles
        one connection's calls in order: the old instance (old address, old ID) is gone before bluetoothd
        reads the new content with GetAll, so no advert ever pairs the old address with the new ID, and one
        D-Bus round trip less is spent off air. The tasks start in creation order, so the messages leave in
        it. The content may change first: bluetoothd read the old one at its own Register and follows no
        change without a PropertiesChanged, which we never send."""
        ad.set_content(live.service_uuid16, live.service_data)
        unregister = asyncio.ensure_future(self._unregister())
        register = asyncio.ensure_future(self._register())
        dropped, added = await asyncio.gather(unregister, register, return_exceptions=True)
        if isinstance(added, BaseException):
            raise added
        if isinstance(dropped, BaseException):  # Register went through, so the old one is gone after all
            log.debug("unregistering the old advert on %s: %s", self.adapter, describe(dropped))

    async def _register(self) -> None:
        await self._register_path(self.path)

    async def _register_path(self, path: str) -> None:
        try:
            await self._call(REGISTER_ADVERTISEMENT, "oa{sv}", [path, {}])
        except DBusError as exc:
            if dbus_error_name(exc) != E_ALREADY_EXISTS:
                raise
            # an earlier Register we gave up on completed after all: take it back and register afresh
            await self._unregister_path(path)
            await self._call(REGISTER_ADVERTISEMENT, "oa{sv}", [path, {}])

    async def _unregister(self) -> None:
        self._registered = False
        await self._unregister_path(self.path)

    async def _unregister_path(self, path: str) -> None:
        try:
            await self._call(UNREGISTER_ADVERTISEMENT, "o", [path])
        except DBusError as exc:
            if dbus_error_name(exc) != E_DOES_NOT_EXIST:
                raise

    async def _stop_advertising(self) -> None:
        if self._registered:
            try:
                await self._unregister()
            except Exception as exc:  # it is going away either way; note why
                self._last_error = describe(exc)
        self._advertising = False

    async def _call(self, member: str, signature: str, body: list[object]) -> None:
        reply = await self._adapter_call(ADV_MANAGER, member, signature, body)
        if reply.message_type is MessageType.ERROR:
            raise DBusError(reply.error_name or E_DBUS_FAILED, str(reply.body[:1]), reply)

    async def _adapter_call(self, interface: str, member: str, signature: str, body: list[object]) -> Message:
        """One call to bluetoothd on this adapter's object, bounded by the call timeout."""
        assert self._bus is not None
        msg = Message(
            destination=BLUEZ,
            path=f"{ADAPTER_PREFIX}{self.adapter}",
            interface=interface,
            member=member,
            signature=signature,
            body=body,
        )
        return await within(self._io, self._call_timeout, self._bus.call(msg))

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        self._consecutive += 1
        self._advertising = False
        self._last_error = describe(exc)
        self._note = f"registration failing ({classify(exc).value})"
        log.warning(
            "advertising on %s failed (%s, attempt %d); retrying", self.adapter, self._last_error, self._consecutive
        )

    def _cleanup_failed(self, exc: Exception) -> None:
        """Unregistering a replaced advert failed: counted and retried, while the live one stays on air."""
        self._failures += 1
        self._stale_attempts += 1
        self._last_error = describe(exc)
        log.warning("removing the replaced advert on %s failed (%s); retrying", self.adapter, self._last_error)

    def _retry_delay(self, exc: Exception) -> float:
        if classify(exc) is ErrorKind.REJECTED:
            return backoff_delay(self._consecutive, REFUSED_BACKOFF_S, max(REFUSED_BACKOFF_MAX_S, self._backoff_max))
        return backoff_delay(self._consecutive, maximum=self._backoff_max)

    def _released(self, path: str) -> None:
        """BlueZ dropped one of our adverts by itself (adapter gone, bluetoothd stopping)."""
        self._releases += 1
        self._stale.discard(path)
        if path != self.path:
            return  # the replaced one, on its way out anyway
        self._registered = False
        self._advertising = False
        log.warning("BlueZ released the advertisement on %s", self.adapter)
        self._wake.set()

    async def _wait(self, clock: Clock, seconds: float, watch: BluezWatch, state: BluezState) -> str:
        """Sleep on ``clock``; return early ("wake" / "bluez") on a Release, new scheme or BlueZ change."""

        def changed(s: BluezState) -> bool:
            return s.generation != state.generation or s.ready(self.adapter) != state.ready(self.adapter)

        reason = await first(time=clock.sleep(seconds), wake=self._wake.wait(), bluez=watch.wait_until(changed))
        if reason == "bluez":
            now = watch.state
            if now.generation != state.generation or not now.ready(self.adapter):
                self._registered = False
                self._advertising = False
        return reason

    async def _sleep_until(self, target: float, watch: BluezWatch, state: BluezState) -> None:
        """Until ``target`` on the scheme's clock; an early wake-up (timer jitter) just sleeps again."""
        while (remaining := target - self._clock.now()) > 0:
            if await self._wait(self._clock, remaining, watch, state) != "time":
                return
