"""The device's own key material: created, kept in the store, rolled daily, and turned into a Scheme.

Keys live only in the store (0600) and leave it only through a report. Rolling is explicit: the DP-3T
chain is re-based so that no SK older than the retention window survives (forward secrecy for the
past), GAEN gets a fresh random TEK per UTC day, and EBIDs are whatever batch the backend issued.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from agent.clock import DAY, day_of
from agent.schemes import dp3t, ebid, gaen
from agent.schemes.base import Scheme, SchemeName
from agent.store import OwnKey, Store


class KeyRing:
    def __init__(
        self,
        store: Store,
        scheme: SchemeName,
        retention_days: int = 14,
        random_bytes: Callable[[int], bytes] = os.urandom,
        calibration_confidence: int = 0,
    ) -> None:
        self.store = store
        self.scheme_name = scheme
        self.retention_days = retention_days
        self.random_bytes = random_bytes
        self.calibration_confidence = calibration_confidence

    def ensure(self, now: float) -> None:
        """Make sure key material covers today and tomorrow, and nothing older than retention is kept."""
        if self.scheme_name is SchemeName.DP3T:
            self._ensure_dp3t(now)
        elif self.scheme_name is SchemeName.GAEN:
            self._ensure_gaen(now)

    def scheme(self) -> Scheme:
        if self.scheme_name is SchemeName.DP3T:
            return dp3t.Dp3tScheme(self.dp3t_state())
        if self.scheme_name is SchemeName.GAEN:
            return gaen.GaenScheme(tuple(self.teks()), gaen.VERSION_1_1, self.calibration_confidence)
        return ebid.EbidScheme(self.ebid_batch())

    # -- DP-3T --------------------------------------------------------------------------------------------

    def dp3t_state(self) -> dp3t.Dp3tKeyState:
        rows = self.store.own_keys(SchemeName.DP3T, "chain")
        if not rows:
            raise LookupError("no DP-3T key chain yet")
        row = rows[-1]
        return dp3t.Dp3tKeyState(int(row.meta["start_day"]), row.material[:32], row.material[32:])  # type: ignore[call-overload]

    def _ensure_dp3t(self, now: float) -> None:
        today = day_of(now)
        oldest_kept = today - self.retention_days + 1
        try:
            state = self.dp3t_state()
        except LookupError:
            state = dp3t.new_key_state(now, self.random_bytes)
        else:
            if state.start_day >= oldest_kept:
                return
            state = state.rebased(oldest_kept)
        self.reset_dp3t(state)

    def reset_dp3t(self, state: dp3t.Dp3tKeyState | None = None, now: float | None = None) -> None:
        """Store ``state`` as the chain (or a fresh random one from ``now``: after a report)."""
        if state is None:
            assert now is not None
            state = dp3t.new_key_state(now, self.random_bytes)
        key = OwnKey(
            SchemeName.DP3T,
            "chain",
            state.start_day * DAY,
            float("inf"),
            state.start_sk + state.shuffle_secret,
            {"start_day": state.start_day},
        )
        self.store.replace_own_keys(SchemeName.DP3T, "chain", [key])

    def dp3t_report_keys(self, first_day: int) -> tuple[int, bytes]:
        """(t, SK_t) for the first contagious day, never earlier than what is kept."""
        state = self.dp3t_state()
        day = max(first_day, state.start_day)
        return day, state.sk_for_day(day)

    # -- GAEN -------------------------------------------------------------------------------------------------

    def teks(self) -> list[gaen.TemporaryExposureKey]:
        return [
            gaen.TemporaryExposureKey(k.material, int(k.meta["rolling_start"]))  # type: ignore[call-overload]
            for k in self.store.own_keys(SchemeName.GAEN, "tek")
        ]

    def _ensure_gaen(self, now: float) -> None:
        have = {k.rolling_start_interval_number for k in self.teks()}
        for day in (day_of(now), day_of(now) + 1):
            start = day * gaen.ROLLING_PERIOD
            if start not in have:
                self.store.put_own_key(
                    OwnKey(
                        SchemeName.GAEN,
                        "tek",
                        day * DAY,
                        (day + 1) * DAY,
                        self.random_bytes(gaen.TEK_LEN),
                        {"rolling_start": start},
                    )
                )

    # -- EBID ------------------------------------------------------------------------------------------------

    def ebid_batch(self) -> ebid.EbidBatch:
        rows = self.store.own_keys(SchemeName.EBID, "ebid")
        period = (
            int(rows[0].meta.get("period_seconds", ebid.DEFAULT_PERIOD_SECONDS))
            if rows
            # type: ignore[call-overload]
            else (ebid.DEFAULT_PERIOD_SECONDS)
        )
        entries = tuple(ebid.EbidEntry(int(r.meta["period"]), r.material[1:], r.material[0]) for r in rows)  # type: ignore[call-overload]
        return ebid.EbidBatch(period, entries)

    def store_ebid_batch(self, batch: ebid.EbidBatch) -> None:
        keys = [
            OwnKey(
                SchemeName.EBID,
                "ebid",
                e.period * batch.period_seconds,
                (e.period + 1) * batch.period_seconds,
                bytes([e.ecc]) + e.ebid,
                {"period": e.period, "period_seconds": batch.period_seconds},
            )
            for e in batch.entries
        ]
        existing = [
            k
            for k in self.store.own_keys(SchemeName.EBID, "ebid")
            if k.meta.get("period") not in {e.period for e in batch.entries}
        ]
        self.store.replace_own_keys(SchemeName.EBID, "ebid", [*existing, *keys])

    def ebid_periods_left(self, now: float) -> int:
        batch = self.ebid_batch()
        last = batch.last_period()
        return 0 if last is None else max(0, last - ebid.period_of(now, batch.period_seconds) + 1)
