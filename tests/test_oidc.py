"""Single sign-on: JWTs of an OpenID Connect issuer as bearer tokens. The issuer is a real HTTP
server on loopback publishing its discovery document and signing keys."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from rest_framework.test import APIClient

from tests.net import JSONHandler, serve_http
from tests.test_device_api import device

pytestmark = pytest.mark.django_db

DEV = "/api/v1/devices"
CLIENT_ID = "flightctl"


class Issuer:
    """Publishes ``/.well-known/openid-configuration`` and ``/jwks``; signs tokens."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="key-1", use="sig", alg="RS256")
        issuer = self

        class Handler(JSONHandler):
            def do_GET(self):  # noqa: N802 - the http.server interface
                documents = {
                    "/realms/edge/.well-known/openid-configuration": {
                        "issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"},
                    "/realms/edge/jwks": {"keys": [jwk]},
                }
                self.send_json(200 if self.path in documents else 404,
                               documents.get(self.path, {}))

        self.server = serve_http(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/realms/edge"

    def token(self, username: str = "alice", groups=("flightctl-viewer",), key=None,
              **claims) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                   "sub": f"id-{username}", "preferred_username": username,
                   "groups": list(groups), **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256",
                          headers={"kid": "key-1"})


@pytest.fixture(scope="module")
def issuer():
    server = Issuer()
    yield server
    server.server.shutdown()


@pytest.fixture
def sso(settings, monkeypatch, issuer):
    monkeypatch.setattr(settings.FLIGHTCTL, "oidc_issuer", issuer.url)
    monkeypatch.setattr(settings.FLIGHTCTL, "oidc_client_id", CLIENT_ID)
    return issuer


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_token_of_the_issuer_signs_in_with_the_role_its_groups_give(sso):
    viewer = bearer(sso.token("alice", groups=["staff", "flightctl-viewer"]))
    assert viewer.get(DEV).status_code == 200
    assert viewer.post(DEV, device("d1"), format="json").status_code == 403
    assert viewer.get("/api/v1/auth/userinfo").json()["preferred_username"] == "alice"
    admin = bearer(sso.token("bob", groups=["flightctl-admin"]))
    assert admin.post(DEV, device("d1"), format="json").status_code == 201
    # The same person with another role next time: the local mirror follows the token.
    assert bearer(sso.token("alice", groups=["flightctl-operator"])).delete(
        f"{DEV}/d1").status_code == 200
    assert bearer(sso.token("alice", groups=[])).get(DEV).status_code == 403


def test_the_issuers_users_never_touch_local_users(sso, api):
    """A token for "admin" with a viewer's groups is not the local administrator."""
    from django.contrib.auth import get_user_model

    bearer(sso.token("admin", groups=["flightctl-viewer"])).get(DEV)
    assert get_user_model().objects.get(username="admin").is_superuser
    assert api.post(DEV, device("d2"), format="json").status_code == 201
    assert not get_user_model().objects.get(username="oidc:admin").is_superuser


@pytest.mark.parametrize(("claims", "message"), [
    ({"aud": "someone-else"}, "Audience doesn't match"),
    ({"iss": "https://elsewhere.example"}, "Invalid issuer"),
    ({"exp": int(time.time()) - 60}, "Signature has expired"),
    ({"preferred_username": ""}, "the token has no preferred_username claim"),
])
def test_a_token_that_does_not_hold_is_refused_with_the_reason(sso, claims, message):
    response = bearer(sso.token(**claims)).get(DEV)
    assert response.status_code == 401
    assert response.json()["kind"] == "Status" and message in response.json()["message"]


def test_a_token_signed_by_another_key_is_refused(sso):
    forged = sso.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    response = bearer(forged).get(DEV)
    assert response.status_code == 401
    assert "Signature verification failed" in response.json()["message"]


def test_auth_config_announces_the_issuer(sso, anon):
    config = anon.get("/api/v1/auth/config").json()
    assert config["defaultProvider"] == "oidc"
    spec = config["providers"][0]["spec"]
    assert (spec["providerType"], spec["issuer"], spec["clientId"]) == (
        "oidc", sso.url, CLIENT_ID)
    assert spec["roleAssignment"] == {"type": "dynamic", "claimPath": ["groups"]}


def test_without_an_issuer_a_jwt_is_just_an_unknown_token(issuer, anon):
    response = bearer(issuer.token(groups=["flightctl-admin"])).get(DEV)
    assert response.status_code == 401 and response.json()["message"] == "invalid token"
    # Only the bundled password issuer is left to log in with.
    assert [p["metadata"]["name"] for p in anon.get("/api/v1/auth/config").json()[
        "providers"]] == ["local"]
