"""Per-model calibration from a trace: which TX level each transmitter model radiates and which RSSI
correction each receiver model needs, fitted from rows that name the models and the distance.

The model is the agent's own rule read backwards. The agent computes attenuation = TX power - (RSSI +
RSSI correction) (agent/config.py ``device_calibration`` picks the two numbers); a calibrated pair's
attenuation should depend on distance only, as ``proxitrace calibrate`` assumes:
attenuation = L(1 m) + 10·n·log10(d), L(1 m) the free-space 41 dB of agent/calibration.py. So each row is

    RSSI = TX(transmitter model) - correction(receiver model) - 41 - 10·n·log10(d) + noise

and TX per model, correction per model and n are fitted by least squares. A trace only tells models apart
from each other (a louder sender and a deafer receiver cancel), so one receiver model is the reference
(its correction is pinned, 0 dB unless told), as one reference beacon anchors ``calibrate``.

Two devices that only hear each other (the public two-phone data set) give one number per direction,
TX(sender) - correction(receiver): no reference can split that. There the TX level is fixed for every
model (``fixed_tx_power``, e.g. the table's default) and only the corrections and n are fitted, each
correction then absolute: what the receiver needs for the agent's rule to hold against that sender.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from agent.calibration import FREE_SPACE_LOSS_1M_DB
from agent.testbed.trace import TraceRow

MIN_DISTANCE_M = 0.1  # closer than this, log10(d) says more about the tape measure than the radio


class CalibrationFitError(ValueError):
    """A trace this fit cannot use (one line)."""


@dataclass(frozen=True)
class ModelCalibration:
    model: str
    tx_power: float | None  # dBm radiated, when the model transmitted in the trace
    rssi_correction: float | None  # dB, when the model received in the trace
    rows: int


@dataclass(frozen=True)
class CalibrationFit:
    path_loss_exponent: float
    reference: str
    reference_correction: float
    models: tuple[ModelCalibration, ...]
    rows: int
    residual_db: float  # RMS of RSSI - model
    fixed_tx_power: float | None = None  # every model's TX, when it was fixed rather than fitted


def fit_calibration(
    rows: Iterable[TraceRow],
    reference: str | None = None,
    reference_correction: float = 0.0,
    fixed_tx_power: float | None = None,
) -> CalibrationFit:
    """Least squares over the rows with an RSSI, a distance and both models. With ``fixed_tx_power``
    every model radiates that, no reference is pinned, and only corrections and n are fitted."""
    usable = [
        r
        for r in rows
        if r.rssi is not None
        and r.distance_m is not None
        and r.distance_m >= MIN_DISTANCE_M
        and r.receiver_model
        and r.transmitter_model
    ]
    if not usable:
        raise CalibrationFitError("no row has an RSSI, a distance and both models: nothing to fit")
    if fixed_tx_power is not None:
        return _fit_corrections(usable, fixed_tx_power)
    tx_models = sorted({r.transmitter_model for r in usable})
    rx_models = sorted({r.receiver_model for r in usable})
    reference = (
        reference if reference is not None else max(rx_models, key=lambda m: sum(r.receiver_model == m for r in usable))
    )
    if reference not in rx_models:
        raise CalibrationFitError(f"reference model {reference!r} received nothing in the trace")
    free_rx = [m for m in rx_models if m != reference]
    columns = len(tx_models) + len(free_rx) + 1
    a = np.zeros((len(usable), columns))
    b = np.zeros(len(usable))
    tx_at = {m: i for i, m in enumerate(tx_models)}
    rx_at = {m: len(tx_models) + i for i, m in enumerate(free_rx)}
    for k, r in enumerate(usable):
        a[k, tx_at[r.transmitter_model]] = 1.0
        if r.receiver_model in rx_at:
            a[k, rx_at[r.receiver_model]] = -1.0
        a[k, -1] = -10 * math.log10(r.distance_m or MIN_DISTANCE_M)
        b[k] = (r.rssi or 0) + FREE_SPACE_LOSS_1M_DB + (reference_correction if r.receiver_model == reference else 0.0)
    solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    if np.linalg.matrix_rank(a) < columns:
        raise CalibrationFitError(
            "the rows cannot tell the models or the distances apart (too few distances or model pairs; "
            "two devices that only hear each other need a fixed TX power)"
        )
    residual = float(np.sqrt(np.mean((a @ solution - b) ** 2)))
    models = []
    for m in sorted(set(tx_models) | set(rx_models)):
        tx = float(solution[tx_at[m]]) if m in tx_at else None
        if m == reference:
            correction: float | None = reference_correction
        else:
            correction = float(solution[rx_at[m]]) if m in rx_at else None
        count = sum(r.transmitter_model == m or r.receiver_model == m for r in usable)
        models.append(ModelCalibration(m, tx, correction, count))
    return CalibrationFit(float(solution[-1]), reference, reference_correction, tuple(models), len(usable), residual)


def _fit_corrections(usable: list[TraceRow], tx_power: float) -> CalibrationFit:
    """RSSI = tx_power - correction(receiver model) - L(1 m) - 10·n·log10(d): corrections and n only."""
    rx_models = sorted({r.receiver_model for r in usable})
    rx_at = {m: i for i, m in enumerate(rx_models)}
    a = np.zeros((len(usable), len(rx_models) + 1))
    b = np.zeros(len(usable))
    for k, r in enumerate(usable):
        a[k, rx_at[r.receiver_model]] = -1.0
        a[k, -1] = -10 * math.log10(r.distance_m or MIN_DISTANCE_M)
        b[k] = (r.rssi or 0) + FREE_SPACE_LOSS_1M_DB - tx_power
    if np.linalg.matrix_rank(a) < a.shape[1]:
        raise CalibrationFitError("the rows cannot tell the distances apart (every receiver heard at one distance)")
    solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    residual = float(np.sqrt(np.mean((a @ solution - b) ** 2)))
    tx_models = {r.transmitter_model for r in usable}
    models = tuple(
        ModelCalibration(
            m,
            tx_power if m in tx_models else None,
            float(solution[rx_at[m]]) if m in rx_at else None,
            sum(r.transmitter_model == m or r.receiver_model == m for r in usable),
        )
        for m in sorted(tx_models | set(rx_models))
    )
    return CalibrationFit(float(solution[-1]), "", 0.0, models, len(usable), residual, tx_power)


def _section(model: str) -> str:
    return f'[models."{model}"]'


def update_table(text: str, fit: CalibrationFit, source: str = "a trace") -> str:
    """The calibration table's text with each fitted model's tx_power and rssi_correction set (in its
    ``[models."KEY"]`` section, added at the end when missing), each with a comment saying where it came
    from (``source``); comments and other entries stay as they are."""
    for m in fit.models:
        values = {}
        if m.tx_power is not None:
            values["tx_power"] = str(round(m.tx_power))
        if m.rssi_correction is not None:
            values["rssi_correction"] = f"{m.rssi_correction:.1f}"
        header = _section(m.model)
        if header not in text:
            text = text.rstrip("\n") + f'\n\n{header}\nname = "{m.model}"\n'
        start = text.index(header) + len(header)
        nxt = re.search(r"^\[", text[start:], flags=re.M)
        end = start + nxt.start() if nxt else len(text)
        body = text[start:end]
        for key, value in values.items():
            how = f"fitted from {source} ({fit.rows} rows)"
            if key == "tx_power" and fit.fixed_tx_power is not None:
                how = f"fixed for the fit of {source}: two phones cannot tell a quiet sender from a deaf receiver"
            line = f"{key} = {value}  # {how}"
            pattern = re.compile(rf"^{key}\s*=.*$", flags=re.M)
            body = pattern.sub(line, body) if pattern.search(body) else body.rstrip("\n") + f"\n{line}\n"
        if nxt and not body.endswith("\n\n"):
            body = body.rstrip("\n") + "\n\n"
        text = text[:start] + body + text[end:]
    return text
