"""Service-account JWTs and OIDC claim mapping, as pure functions (no server)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from kumo.auth.oidc import OIDCAuthenticator, OIDCOptions
from kumo.auth.service_accounts import (
    DEFAULT_ISSUER,
    BoundPod,
    TokenSigner,
    load_or_create_key,
)
from kumo.cli.auth_commands import parse_duration


@pytest.fixture
def signer(tmp_path: Path) -> TokenSigner:
    return TokenSigner(load_or_create_key(tmp_path / "pki"))


def test_the_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path / "pki")
    assert (tmp_path / "pki" / "sa.key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(tmp_path / "pki").thumbprint() == first.thumbprint()


def test_a_token_verifies_with_its_claims(signer: TokenSigner) -> None:
    token, expires = signer.issue(
        "ns", "robot", "uid-1", audiences=[DEFAULT_ISSUER], seconds=600, pod=BoundPod("p", "u2")
    )
    claims = signer.verify(token, [DEFAULT_ISSUER])
    assert claims is not None
    assert (claims.namespace, claims.name, claims.uid) == ("ns", "robot", "uid-1")
    assert claims.pod == BoundPod("p", "u2")
    assert claims.expires == expires
    assert claims.audiences == (DEFAULT_ISSUER,)


def test_wrong_audience_expired_and_tampered_tokens_fail(
    signer: TokenSigner, tmp_path: Path
) -> None:
    token, _ = signer.issue("ns", "robot", "u", audiences=["vault"], seconds=600)
    assert signer.verify(token, [DEFAULT_ISSUER]) is None
    assert signer.verify(token, ["vault", DEFAULT_ISSUER]) is not None
    old, _ = signer.issue(
        "ns", "robot", "u", audiences=[DEFAULT_ISSUER], seconds=600, now=int(time.time()) - 601
    )
    assert signer.verify(old, [DEFAULT_ISSUER]) is None
    header, payload, signature = old.split(".")
    assert signer.verify(f"{header}.{payload}x.{signature}", [DEFAULT_ISSUER]) is None
    other = TokenSigner(load_or_create_key(tmp_path / "other"))
    foreign, _ = other.issue("ns", "robot", "u", audiences=[DEFAULT_ISSUER], seconds=600)
    assert signer.verify(foreign, [DEFAULT_ISSUER]) is None
    # another issuer with the same key is not ours either
    renamed = TokenSigner(signer.key, "https://elsewhere")
    elsewhere, _ = renamed.issue("ns", "robot", "u", audiences=[DEFAULT_ISSUER], seconds=600)
    assert signer.verify(elsewhere, [DEFAULT_ISSUER]) is None
    # "none" algorithm and garbage
    assert signer.verify("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", [DEFAULT_ISSUER]) is None
    assert signer.verify("not-a-jwt", [DEFAULT_ISSUER]) is None


def test_the_jwks_holds_only_the_public_key(signer: TokenSigner) -> None:
    [key] = signer.jwks()["keys"]
    assert key["kty"] == "EC" and key["alg"] == "ES256" and key["kid"] == signer.key_id
    assert "d" not in key


def _oidc(**options: object) -> OIDCAuthenticator:
    return OIDCAuthenticator(OIDCOptions(issuer_url="https://idp", client_id="kumo", **options))  # type: ignore[arg-type]


def _claims(**extra: object) -> dict[str, object]:
    return {
        "iss": "https://idp",
        "aud": ["kumo", "x"],
        "sub": "42",
        "exp": time.time() + 60,
        **extra,
    }


def test_oidc_names_are_prefixed_unless_told_otherwise() -> None:
    user = _oidc().user_of(_claims())
    assert user is not None and user.name == "https://idp#42"
    assert user.groups == ("system:authenticated",)
    plain = _oidc(username_prefix="-").user_of(_claims())
    assert plain is not None and plain.name == "42"
    custom = _oidc(username_prefix="oidc:").user_of(_claims())
    assert custom is not None and custom.name == "oidc:42"
    email = _oidc(username_claim="email").user_of(_claims(email="a@b"))
    assert email is not None and email.name == "a@b"


def test_oidc_groups_and_refusals() -> None:
    auth = _oidc(groups_claim="groups", groups_prefix="g:")
    user = auth.user_of(_claims(groups=["a", "b", 3]))
    assert user is not None and user.groups == ("g:a", "g:b", "system:authenticated")
    single = auth.user_of(_claims(groups="solo"))
    assert single is not None and single.groups[0] == "g:solo"
    assert auth.user_of(_claims(aud="other")) is None
    assert auth.user_of(_claims(iss="https://evil")) is None
    assert auth.user_of(_claims(exp=time.time() - 1)) is None
    assert auth.user_of(_claims(nbf=time.time() + 3600)) is None
    assert auth.user_of({**_claims(), "exp": "soon"}) is None
    assert _oidc(username_claim="email").user_of(_claims(email="a@b", email_verified=False)) is None


async def test_oidc_verifies_signatures_from_a_jwks_file(tmp_path: Path) -> None:
    import json

    from joserfc.jwk import KeySet

    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(KeySet([key]).as_dict(private=False)))
    auth = _oidc(jwks_file=jwks)
    good = jwt.encode({"alg": "ES256", "kid": "k1"}, _claims(), key)
    user = await auth.authenticate(good)
    assert user is not None and user.name == "https://idp#42"
    stranger = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    assert (
        await auth.authenticate(jwt.encode({"alg": "ES256", "kid": "k1"}, _claims(), stranger))
        is None
    )
    assert await auth.authenticate("kumo_abc.def") is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600), ("1h", 3600), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("7d", 604800)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 2m", "-1h"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    import click

    with pytest.raises(click.BadParameter):
        parse_duration(text)
