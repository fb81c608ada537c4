"""The wearable edge's own settings (``agent.config`` builds them from the ``[wearable]`` table)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.feedback import CONSENT_WINDOW_SECONDS


class WearableError(Exception):
    """A GPIO line or TAN file that cannot be used; the message is one line naming the chip, line or file."""


@dataclass(frozen=True)
class WearableSettings:
    """``chip``: the GPIO character device (``/dev/gpiochip0``), None for no button and LED.
    ``button_active_low``: the button pulls its line to ground (the usual wiring, with the pull-up on).
    ``tan_dir``: where TAN files arrive (a USB stick's mount point), None for none."""

    chip: Path | None = None
    button_line: int = 17
    led_line: int = 27
    button_active_low: bool = True
    led_active_low: bool = False
    tan_dir: Path | None = None
    consent_seconds: float = CONSENT_WINDOW_SECONDS
    tan_poll_seconds: float = 2.0
