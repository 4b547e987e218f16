"""Every fake credential the tests hand to flowcat: none may ever appear in a log record.

conftest.py installs a handler on the root logger for the whole session (every logger,
DEBUG) that checks each record's message (and exception text) for these strings; a test
during which one leaks fails at teardown, naming the logger and the line. Add a test's
fake key here when you add one (short generic values such as ``"k"`` are left out: they
would match ordinary words).
"""

from __future__ import annotations

import base64

GENESYS_SECRET_RAW = b"flowcat test client secret, 32b!"  # test_carrier_auth_genesys.SECRET_RAW

SECRETS: tuple[str, ...] = (
    # flowcat.testing's fakes and the conformance suite's defaults
    "fake-key",
    "sk-conformance-0123456789abcdef-SECRET",
    # provider tests and the fakes' own tests
    "sk-vendor-fake-0123456789-SECRET",
    "sk-fakes-conformance-0123456789-SECRET",
    "sk-test-0123456789-SECRET",
    "dg-test-key-SECRET",
    "cartesia-key-SECRET",
    "wrong-key-0123456789",
    "sk-wrong-0123456789abc",
    "AIza-wrong-key-0123456789",
    "pplx-0123456789",
    # AWS (Nova Sonic, HTTP/2 tests): a wrong secret, a signer's secret, a session token
    "not-the-secret-0123456789",
    "secret-for-the-chain-0123456789",
    "FwoGZXIvYXdzEXAMPLE-session-token-SECRET",
    # brains
    "brain-token-0123456789-SECRET",
    "ws-brain-token-0123456789-SECRET",
    "ws-ssrf-token",
    # carriers
    "twilio-auth-token-for-tests",
    "vonage-signature-secret-for-tests",
    "flowcat-test-api-key-0123456789",
    base64.b64encode(GENESYS_SECRET_RAW).decode(),
    GENESYS_SECRET_RAW.decode(),
)
