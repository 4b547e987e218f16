"""SigV4 signing (flowcat.services._sigv4) against AWS's published test suite and IAM example.

The vectors in ``tests/fixtures/sigv4/v4/`` are AWS's SigV4 test suite as kept in
awslabs/aws-c-auth (see the README there): for each request we assert the canonical
request, the string to sign, the signature and the headers added, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from flowcat.errors import ConfigError
from flowcat.services._secrets import Secret
from flowcat.services._sigv4 import (
    AWSCredentials,
    amz_date,
    canonical_uri,
    resolve_aws_credentials,
    resolve_aws_region,
    sign_request,
    signing_key,
)

SUITE = Path(__file__).parent / "fixtures" / "sigv4" / "v4"
CASES = sorted(p.name for p in SUITE.iterdir() if p.is_dir())
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def parse_request(text: str) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """``request.txt``: request line, headers (folded lines continue the previous one), body."""
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    first = lines[0].split(" ")
    method, path = first[0], " ".join(first[1:-1])
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + "\n" + line)
            continue
        name, _, value = line.partition(":")
        headers.append((name, value))
    return method, path, headers, body.encode()


def header_lines(text: str) -> set[str]:
    head = text.partition("\n\n")[0]
    return {line.split(":", 1)[0].lower() + ":" + line.split(":", 1)[1] for line in head.split("\n")[1:]
            if line and line[0] not in " \t"}  # folded continuation lines belong to the request's own header


@pytest.mark.parametrize("case", CASES)
def test_aws_sigv4_suite(case: str) -> None:
    d = SUITE / case
    ctx = json.loads((d / "context.json").read_text())
    creds = ctx["credentials"]
    credentials = AWSCredentials(creds["access_key_id"], Secret(creds["secret_access_key"]),
                                 Secret(creds["token"]) if creds.get("token") else None)
    request = (d / "request.txt").read_text()
    method, path, headers, body = parse_request(request)
    host = next(v for n, v in headers if n.lower() == "host")
    signed = sign_request(
        method, f"https://{host}{path}", headers, body,
        credentials=credentials, region=ctx["region"], service=ctx["service"],
        now=dt.datetime.fromisoformat(ctx["timestamp"].replace("Z", "+00:00")),
        normalize=ctx["normalize"], content_sha256_header=ctx["sign_body"],
        sign_session_token=not ctx.get("omit_session_token", False),
    )
    assert signed.canonical_request == (d / "header-canonical-request.txt").read_text()
    assert signed.string_to_sign == (d / "header-string-to-sign.txt").read_text()
    assert signed.signature == (d / "header-signature.txt").read_text()
    expected_added = header_lines((d / "header-signed-request.txt").read_text()) - header_lines(request)
    assert {f"{n.lower()}:{v}" for n, v in signed.headers.items()} == expected_added


def test_the_suite_is_all_there() -> None:
    assert len(CASES) == 38
    assert {"get-vanilla", "get-vanilla-query-order-key-case", "post-x-www-form-urlencoded", "get-header-value-trim",
            "post-vanilla-query", "get-utf8", "get-space-normalized", "get-relative-relative-normalized",
            "post-sts-header-before", "post-sts-header-after"} <= set(CASES)


def test_iam_documented_example() -> None:
    # AWS's worked example (IAM ListUsers, 2015-08-30; "Create a signed AWS API request" and the
    # earlier General Reference pages sigv4-create-canonical-request / sigv4-calculate-signature).
    assert signing_key(SECRET, "20150830", "us-east-1", "iam").hex() == (
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9")
    signed = sign_request(
        "GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
        [("Host", "iam.amazonaws.com"), ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")], b"",
        credentials=AWSCredentials("AKIDEXAMPLE", Secret(SECRET)), region="us-east-1", service="iam",
        now=dt.datetime(2015, 8, 30, 12, 36, tzinfo=dt.UTC),
    )
    assert signed.canonical_request == (
        "GET\n/\nAction=ListUsers&Version=2010-05-08\n"
        "content-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\n"
        "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert signed.string_to_sign.split("\n")[-1] == "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    assert signed.signature == "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    assert signed.authorization == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")


def test_bedrock_model_id_is_encoded_twice_but_s3_paths_are_not() -> None:
    wire = "/model/us.amazon.nova-lite-v1%3A0/converse-stream"
    assert canonical_uri(wire) == "/model/us.amazon.nova-lite-v1%253A0/converse-stream"
    assert canonical_uri("/bucket/a%20b//c", double_encode=False, normalize=False) == "/bucket/a%20b//c"


def test_amz_date_is_utc() -> None:
    cest = dt.timezone(dt.timedelta(hours=2))
    assert amz_date(dt.datetime(2015, 8, 30, 14, 36, tzinfo=cest)) == "20150830T123600Z"


def test_credentials_from_arguments_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError) as err:
        resolve_aws_credentials()
    assert "AWS_ACCESS_KEY_ID" in str(err.value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token-value")
    creds = resolve_aws_credentials()
    assert creds.access_key_id == "AKIDENV" and creds.secret_access_key.reveal() == "env-secret-value"
    assert creds.session_token is not None and creds.session_token.reveal() == "env-token-value"
    assert "env-secret-value" not in repr(creds) and "env-token-value" not in repr(creds)
    given = resolve_aws_credentials("AKIDARG", "arg-secret")
    assert given.access_key_id == "AKIDARG" and given.session_token is None  # not mixed with the environment
    with pytest.raises(ConfigError):
        resolve_aws_credentials("AKIDARG")  # a key id alone is not half-filled from the environment
    with pytest.raises(ConfigError):
        resolve_aws_region()
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert resolve_aws_region() == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert resolve_aws_region() == "eu-central-1" and resolve_aws_region("us-west-2") == "us-west-2"
