"""The report a wearer consented to with the button: the same steps as ``proxitrace report --yes``.

The TAN is redeemed here, after the consent, as the interactive command does too (which checks it first,
spending nothing, to show the contagious window): a wearable has nothing to show it on, and a report the
wearer lets lapse then never reaches the backend at all. The check is still made, as by every report and
every dummy report, so a wearable's real report looks like its dummy ones on the wire. The officer's onset
date on the TAN decides the window, as always.
"""

from __future__ import annotations

import logging

import aiohttp

from agent.schemes.base import SchemeName
from agent.sync import SyncError, SyncService, reported_onset
from agent.wearable.settings import WearableError

log = logging.getLogger(__name__)


async def send_report(service: SyncService, scheme: SchemeName, tan: str, now: float, correction: float) -> int:
    """Redeem ``tan`` and send this device's report for it; returns how many keys or contacts went.

    ``WearableError`` (one line, never the TAN) when the backend refuses or cannot be reached; the TAN's
    tokens are then kept by the sync service for the next try, as for the command line."""
    try:
        grant = await service.check_tan(tan)
        if scheme is SchemeName.EBID:
            retained = service.ebid_contacts(None, now, correction)
            if not retained:
                log.warning("consented report: no EBID heard in the retention period; nothing to send")
                return 0
            bought = await service.buy_submission_tokens(tan, len(retained), grant.report_type)
            contacts = service.ebid_contacts(reported_onset(bought.grant, None), now, correction)
            if contacts:
                await service.submit(contacts, bought)
            return len(contacts)
        token = await service.exchange_tan(tan)
        keys = service.report_keys(scheme, reported_onset(token.grant, None), now)
        if keys:
            await service.upload(scheme, token, None, keys)
        return len(keys)
    except SyncError as exc:
        raise WearableError(exc.reason) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise WearableError(f"the backend could not be reached ({type(exc).__name__})") from None
