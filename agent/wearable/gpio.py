"""The button and the LED through the kernel's GPIO character device, with libgpiod v2's Python bindings.

The character device (``/dev/gpiochipN``) is the kernel's maintained GPIO interface: the sysfs one is
deprecated, and the Pi's own libraries bypass the kernel. One line request holds both lines, so no other
program can drive the LED or steal the button while the agent runs, and the kernel time-stamps each button
edge (CLOCK_MONOTONIC), so a long press is measured from when it happened, not from when a busy event loop
got to it. Debouncing and the long-press rule are ``agent.feedback``'s, not the kernel's: chips without
hardware debounce (USB bridges) behave the same as a Pi's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
from typing import TYPE_CHECKING, Protocol

from agent.wearable.settings import WearableError, WearableSettings

if TYPE_CHECKING:
    import gpiod

log = logging.getLogger(__name__)

CONSUMER = "proxitrace"  # what `gpioinfo` shows as the lines' user


class Panel(Protocol):
    """A button and an LED: the GPIO lines on a wearable; a test double on a desk rig."""

    def set_led(self, on: bool) -> None: ...

    async def next_level(self) -> tuple[bool, float]:
        """The button's next level change: (pressed, when, in time.monotonic() seconds)."""
        ...

    def close(self) -> None: ...


class GpioPanel:
    """The button line (input, both edges) and the LED line (output) of one chip, in one request."""

    def __init__(self, request: gpiod.LineRequest, settings: WearableSettings) -> None:
        self._request = request
        self._settings = settings
        self._levels: asyncio.Queue[tuple[bool, float]] = asyncio.Queue()
        self._reading = False

    @classmethod
    def open(cls, settings: WearableSettings) -> GpioPanel:
        """Request both lines; ``WearableError`` names the chip or line that cannot be had."""
        if settings.chip is None:
            raise WearableError("wearable.chip: not set")
        try:
            import gpiod
            from gpiod.line import Bias, Direction, Edge, Value
        except ImportError:
            raise WearableError(
                "wearable.chip is set but the gpiod package (a dependency of proxitrace) is missing: "
                "pip install 'gpiod>=2.2,<3'"
            ) from None
        bias = Bias.PULL_UP if settings.button_active_low else Bias.PULL_DOWN
        config = {
            settings.button_line: gpiod.LineSettings(
                direction=Direction.INPUT,
                edge_detection=Edge.BOTH,
                bias=bias,
                active_low=settings.button_active_low,
                debounce_period=dt.timedelta(0),
            ),
            settings.led_line: gpiod.LineSettings(
                direction=Direction.OUTPUT, active_low=settings.led_active_low, output_value=Value.INACTIVE
            ),
        }
        chip = str(settings.chip)
        try:
            request = gpiod.request_lines(chip, config=config, consumer=CONSUMER)
        except FileNotFoundError:
            raise WearableError(f"wearable.chip: {chip}: no such GPIO chip") from None
        except PermissionError:
            raise WearableError(
                f"wearable.chip: {chip}: permission denied (the agent's user needs the gpio group)"
            ) from None
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                lines = f"{settings.button_line} or {settings.led_line}"
                raise WearableError(f"wearable: line {lines} of {chip} is in use by another program") from None
            if exc.errno in (errno.ENOTTY, errno.ENODEV):
                raise WearableError(f"wearable.chip: {chip} is not a GPIO chip") from None
            raise WearableError(f"wearable.chip: {chip}: {exc.strerror or exc}") from None
        except ValueError as exc:  # an offset the chip does not have
            raise WearableError(f"wearable: {chip}: {exc}") from None
        log.info("wearable: button on line %d, LED on line %d of %s", settings.button_line, settings.led_line, chip)
        return cls(request, settings)

    def pressed(self) -> bool:
        """The button's level now (for the start: it may already be held)."""
        from gpiod.line import Value

        return self._request.get_value(self._settings.button_line) == Value.ACTIVE

    def set_led(self, on: bool) -> None:
        from gpiod.line import Value

        self._request.set_value(self._settings.led_line, Value.ACTIVE if on else Value.INACTIVE)

    async def next_level(self) -> tuple[bool, float]:
        if not self._reading:
            asyncio.get_running_loop().add_reader(self._request.fd, self._read_events)
            self._reading = True
        return await self._levels.get()

    def _read_events(self) -> None:
        import gpiod

        for event in self._request.read_edge_events():
            pressed = event.event_type is gpiod.EdgeEvent.Type.RISING_EDGE  # logical: active-low applied
            self._levels.put_nowait((pressed, event.timestamp_ns / 1e9))

    def close(self) -> None:
        if self._reading:
            asyncio.get_running_loop().remove_reader(self._request.fd)
            self._reading = False
        self._request.release()
