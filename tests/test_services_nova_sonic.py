"""AWSNovaSonicLLMService: the realtime conformance suite against a local HTTP/2 fake of
Bedrock's ``InvokeModelWithBidirectionalStream`` (SigV4 and every event signature verified
there), and the wire: the event-stream envelope signing (a known-answer vector), the session
events, the history and tool-result contents, the end of a session.
"""

from __future__ import annotations

from typing import Any

import pytest

from _fake_nova_sonic import AKID, FakeNovaSonic
from _helpers import conformance_params
from flowcat.services import Backoff
from flowcat.services.realtime import AWSNovaSonicLLMService
from flowcat.testing.conformance import ConformanceTarget, FakeProvider, Scenario, run_scenario

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_nova(fake: FakeProvider, **kw: Any) -> AWSNovaSonicLLMService:
    return AWSNovaSonicLLMService(
        aws_access_key=AKID,
        aws_secret_key=fake.api_key,
        aws_region="us-east-1",
        endpoint_url=fake.url,
        reconnect=FAST,
        connect_timeout_secs=3.0,
        **kw,
    )


CONFORMANCE = {
    "realtime:nova_sonic": ConformanceTarget("realtime", FakeNovaSonic, make_nova),
}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)
