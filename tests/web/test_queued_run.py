"""A run waiting in ExecutionService's admission queue in the web console (issue 10 §5): its page shows it QUEUED, the
runs list's QUEUED filter finds it, and its live stream says `queued`, then `started`, the steps and `finished`."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.auth import ALICE
from tests.support.model_gate import Gate
from tests.web.support import web_stack
from tests.web.test_http import csrf_of, signed_in


def test_a_queued_run_shows_queued_then_follows_live_once_it_starts(tmp_path: Path) -> None:
    gate = Gate()
    with web_stack(tmp_path, execution={"max_concurrent_runs": 1}) as web:
        web.stack.gemini.set_responder(gate.respond)
        web.start(ALICE, "scripted", "wait for the gate")  # holds the only slot
        with signed_in(web, ALICE) as http:
            # The start form does not wait for the run to leave the queue: it goes to the run's page at once.
            form = http.get("/start?agent=scripted")
            run_id = re.search(r'name="run_id" value="([0-9a-f-]{36})"', form.text)
            assert run_id is not None
            data = {"csrf_token": csrf_of(form.text), "agent": "scripted", "task": "then me", "run_id": run_id[1]}
            started = http.post("/start", data=data)
            assert started.status_code == 303, started.text[:300]
            queued_id = started.headers["location"].removeprefix("/runs/")
            assert web.call(lambda: web.stack.execution.flush_outbox(15.0))
            page = http.get(f"/runs/{queued_id}")
            assert page.status_code == 200
            assert 'data-status="QUEUED"' in page.text and "queued for" in page.text
            listed = http.get("/", params={"filter": "status = QUEUED"})
            assert queued_id in listed.text

            events: list[str] = []
            with http.stream("GET", f"/runs/{queued_id}/events") as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    match = re.match(r"^event: (\w+)$", line)
                    if match is None:
                        continue
                    events.append(match.group(1))
                    if match.group(1) == "queued":
                        gate.open()
                    if match.group(1) == "finished":
                        break
            assert events[:2] == ["queued", "started"] and events[-1] == "finished"
            assert "step" in events
        assert web.wait_stored(queued_id).queue_duration.ToTimedelta().total_seconds() > 0
