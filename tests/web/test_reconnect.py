"""The console after a service's outage: pages work again within a few seconds of the service coming back, however
long it was down (the channels cap gRPC's reconnect backoff, agentrun_core.channel_options)."""

from __future__ import annotations

import time

import httpx2 as httpx
from pydantic import SecretStr

from agentrun_web.settings import WebAuth, WebSettings
from tests.support.auth import ALICE
from tests.web.outage_proxy import OutageProxy
from tests.web.support import WebStack, console_only

OUTAGE_S = 12.0
BACK_WITHIN_S = 3.0


def test_runs_page_answers_again_within_3_s_of_runs_service_coming_back_after_a_12_s_outage(web: WebStack) -> None:
    runs_port = int(web.stack.runs_address.rsplit(":", 1)[1])
    proxy = OutageProxy(web.loop, runs_port)
    settings = WebSettings(
        address="127.0.0.1:0",
        runs_target=proxy.target,
        execution_target=web.stack.execution_address,
        auth=WebAuth.TOKENS,
        token=SecretStr(ALICE),
        call_timeout_s=5,
    )
    try:
        with console_only(settings) as console, httpx.Client(base_url=console.url, timeout=30) as client:
            assert client.get("/").status_code == 200
            proxy.stop_service()
            down_since = time.monotonic()
            # People keep asking while it is down (each page is a call: the channel keeps trying to reconnect).
            while time.monotonic() - down_since < OUTAGE_S:
                page = client.get("/")
                assert page.status_code == 503, page.text[:500]
                assert "RunsService is unavailable" in page.text
                time.sleep(0.5)
            # The service comes back just after the console's latest attempt to reach it (the worst moment).
            attempts = len(proxy.refused_at)
            assert attempts >= 1, "the console never tried to reconnect"
            deadline = time.monotonic() + 30
            while len(proxy.refused_at) == attempts and time.monotonic() < deadline:
                time.sleep(0.05)
            proxy.restart_service()
            back_at = time.monotonic()
            statuses: list[int] = []
            while time.monotonic() - back_at < BACK_WITHIN_S + 10:
                statuses.append(client.get("/").status_code)
                if statuses[-1] == 200:
                    break
                time.sleep(0.2)
            waited = time.monotonic() - back_at
            gaps = [round(b - a, 1) for a, b in zip(proxy.refused_at, proxy.refused_at[1:], strict=False)]
            assert statuses[-1] == 200 and waited <= BACK_WITHIN_S, (
                f"the runs page answered {statuses} for {waited:.1f} s after RunsService came back "
                f"(seconds between the console's reconnection attempts while it was down: {gaps})"
            )
    finally:
        proxy.close()
