"""Where the TAN arrives on a device without a keyboard: a file on a USB stick (or SD card) the officer hands over.

Why a file on removable media: it is the channel the wearable already has. Provisioning bundles come
the same way (``agent.provision.find_bundle``), so the mount point and the handling are known to the
operators; it needs no network path to the device, no companion phone and no pairing, and the TAN never
crosses a radio. The health officer writes ``NAME.proxitrace-tan`` (one TOML key, ``tan``) with the TAN
they would otherwise have read out; the wearer plugs the stick in; the device offers the report and
waits for the long press. Nothing is sent, and the TAN is not even redeemed, without that press.

The directory is polled (every ``tan_poll_seconds``), not watched with inotify: a stick's mount appears
under the watched directory as a new mount, which inotify does not report inside, and a poll of a
handful of names every few seconds costs nothing. Each file is offered once per run of the agent (known
by name, size and modification time, never by its content): a declined report is not offered again
until the officer writes the file anew.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

from agent.wearable.settings import WearableError

log = logging.getLogger(__name__)

TAN_SUFFIX = ".proxitrace-tan"
_MAX_TAN_FILE_BYTES = 4096  # one short key; anything larger is not a TAN file
_MAX_TAN_CHARS = 64  # the backend checks the TAN itself; this only refuses what cannot be one


@dataclass(frozen=True)
class TanFile:
    path: Path
    tan: str


def parse_tan_file(text: str, source: str) -> str:
    """The TAN in a TAN file's text; ``WearableError`` (one line naming ``source``, never the TAN) if none."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WearableError(f"{source}: not valid TOML ({exc})") from None
    unknown = sorted(set(raw) - {"tan"})
    if unknown:
        raise WearableError(f'{source}: unknown key {unknown[0]!r} (a TAN file holds only tan = "...")')
    tan = raw.get("tan")
    if not isinstance(tan, str) or not tan.strip():
        raise WearableError(f'{source}: no TAN (expected tan = "XXXX-XXXX-XXXX")')
    tan = tan.strip()
    if len(tan) > _MAX_TAN_CHARS or not tan.isascii() or not tan.isprintable():
        raise WearableError(f"{source}: the tan value cannot be a TAN (printable ASCII, at most {_MAX_TAN_CHARS})")
    return tan


class TanInbox:
    """The TAN files below ``root`` (itself and two levels down: ``/media/USER/LABEL``), each offered once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._seen: set[tuple[str, int, int]] = set()

    def poll(self) -> TanFile | None:
        """The next new TAN file, or None; a bad file is logged once (one line) and skipped, left in place."""
        found = sorted(
            {p for pattern in ("*", "*/*", "*/*/*") for p in self.root.glob(pattern + TAN_SUFFIX) if p.is_file()}
        )
        for path in found:
            try:
                stat = path.stat()
            except OSError:
                continue  # the stick went away between the listing and now
            mark = (str(path), stat.st_size, stat.st_mtime_ns)
            if mark in self._seen:
                continue
            self._seen.add(mark)
            try:
                return TanFile(path, self._read(path, stat.st_size))
            except WearableError as exc:
                log.error("TAN file refused: %s", exc)
        return None

    def forget(self, path: Path) -> None:
        """Offer ``path`` again at the next poll (its report was consented to but did not go out)."""
        self._seen = {mark for mark in self._seen if mark[0] != str(path)}

    @staticmethod
    def _read(path: Path, size: int) -> str:
        if size > _MAX_TAN_FILE_BYTES:
            raise WearableError(f"{path}: {size} bytes is too large for a TAN file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise WearableError(f"{path}: not UTF-8 text") from None
        except OSError as exc:
            raise WearableError(f"{path}: {exc.strerror}") from None
        return parse_tan_file(text, str(path))
