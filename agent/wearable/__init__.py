"""The screenless wearable's own I/O: a button and an LED on the kernel's GPIO character device, and the
directory a health officer's TAN file arrives in. The logic they serve is ``agent.feedback`` (pure)."""

from agent.wearable.gpio import GpioPanel, Panel
from agent.wearable.inbox import TanFile, TanInbox
from agent.wearable.service import WearableService
from agent.wearable.settings import WearableError, WearableSettings

__all__ = [
    "GpioPanel",
    "Panel",
    "TanFile",
    "TanInbox",
    "WearableError",
    "WearableService",
    "WearableSettings",
]
