"""AuthProvider resources through the user API (api.md §2.10): the envelope, validation,
sealed and masked client secrets, selectors, paging, events, roles, and how every process
sees a change within ``auth_provider_cache_ttl``."""

from __future__ import annotations

import pytest

from tests.conftest import patch
from tests.test_rbac import client_for

pytestmark = pytest.mark.django_db

AP = "/api/v1/authproviders"


@pytest.fixture(autouse=True)
def fresh_providers(settings, monkeypatch):
    """Every read checks the table's version: a test's writes are rolled back, not
    committed, so the commit hook that refreshes this process's cache never runs."""
    from flightctl.api import providers

    monkeypatch.setattr(settings.FLIGHTCTL, "auth_provider_cache_ttl", "0s")
    providers.invalidate()
    yield
    providers.invalidate()


def oidc_provider(name: str = "corp", issuer: str = "https://idp.example.com/realms/edge",
                  **spec) -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "AuthProvider",
            "metadata": {"name": name, "labels": {"team": "edge"}},
            "spec": {"providerType": "oidc", "issuer": issuer, "clientId": "flightctl",
                     "clientSecret": "s3cret-value", "displayName": "Corp SSO",
                     "organizationAssignment": {"type": "static", "organizationName": "corp"},
                     "roleAssignment": {"type": "dynamic", "claimPath": ["groups"]},
                     **spec}}


def oauth2_provider(name: str = "gh") -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "AuthProvider",
            "metadata": {"name": name},
            "spec": {"providerType": "oauth2", "clientId": "cli", "clientSecret": "x",
                     "authorizationUrl": "https://gh.example.com/login/oauth/authorize",
                     "tokenUrl": "https://gh.example.com/login/oauth/access_token",
                     "userinfoUrl": "https://api.gh.example.com/user",
                     "usernameClaim": ["login"],
                     "organizationAssignment": {"type": "static", "organizationName": "corp"},
                     "roleAssignment": {"type": "static", "roles": ["flightctl-viewer"]}}}


def test_crud_with_the_secret_sealed_and_masked(api):
    from flightctl.models import AuthProvider, Event

    created = api.post(AP, oidc_provider(), format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["kind"] == "AuthProvider" and body["spec"]["clientSecret"] == "*****"
    assert body["metadata"]["annotations"] == {"auth-provider/createdBySuperAdmin": "true"}
    stored = AuthProvider.objects.get(name="corp").spec["clientSecret"]
    assert stored.startswith("enc:v1:") and "s3cret" not in stored
    assert api.get(f"{AP}/corp").json()["spec"]["clientSecret"] == "*****"
    # "*****" keeps the stored secret, and an unchanged document is no change at all.
    same = api.put(f"{AP}/corp", {**body, "spec": {**body["spec"]}}, format="json")
    assert same.status_code == 200 and same.json()["metadata"]["generation"] == 1
    assert AuthProvider.objects.get(name="corp").spec["clientSecret"] == stored
    changed = api.put(f"{AP}/corp", oidc_provider(clientSecret="other"), format="json")
    assert changed.json()["metadata"]["generation"] == 2
    assert AuthProvider.objects.get(name="corp").spec["clientSecret"] != stored
    patched = patch(api, f"{AP}/corp", [{"op": "add", "path": "/spec/enabled",
                                         "value": False}])
    assert patched.status_code == 200, patched.json()["message"]
    assert patched.json()["spec"]["enabled"] is False
    assert api.delete(f"{AP}/corp").status_code == 200
    assert api.get(f"{AP}/corp").status_code == 404
    reasons = list(Event.objects.filter(involved_kind="AuthProvider").order_by("created_at")
                   .values_list("reason", flat=True))
    assert reasons == ["ResourceCreated", "ResourceUpdated", "ResourceUpdated",
                       "ResourceDeleted"]
    assert not any("s3cret" in str(e.details) + e.message for e in Event.objects.all())


def test_lists_select_and_page(api):
    for index in range(3):
        assert api.post(AP, oidc_provider(f"p{index}", f"https://idp{index}.example.com"),
                        format="json").status_code == 201
    assert api.post(AP, oauth2_provider(), format="json").status_code == 201
    page = api.get(f"{AP}?limit=2").json()
    assert [i["metadata"]["name"] for i in page["items"]] == ["gh", "p0"]
    assert page["metadata"]["remainingItemCount"] == 2
    rest = api.get(f"{AP}?limit=2&continue={page['metadata']['continue']}").json()
    assert [i["metadata"]["name"] for i in rest["items"]] == ["p1", "p2"]
    oauth2 = api.get(f"{AP}?fieldSelector=spec.providerType%3Doauth2").json()["items"]
    assert [i["metadata"]["name"] for i in oauth2] == ["gh"]
    labelled = api.get(f"{AP}?labelSelector=team%3Dedge").json()["items"]
    assert len(labelled) == 3
    assert all(i["spec"]["clientSecret"] == "*****" for i in labelled)


@pytest.mark.parametrize(("change", "message"), [
    ({"providerType": "k8s"}, 'spec.providerType: Forbidden: "k8s" providers can only come '
                              "from the server's configuration"),
    ({"providerType": "saml"}, "spec.providerType: Unsupported value"),
    ({"issuer": None}, "spec.issuer: Required value"),
    ({"issuer": "ftp://x"}, "spec.issuer: Invalid value"),
    ({"clientSecret": "*****"}, "there is no stored secret to keep"),
    ({"roleAssignment": {"type": "dynamic"}}, "spec.roleAssignment.claimPath: Invalid value"),
    ({"organizationAssignment": {"type": "x"}}, "spec.organizationAssignment.type: Unsupported"),
    ({"usernameClaim": []}, "spec.usernameClaim: Invalid value"),
    ({"enabled": "yes"}, "spec.enabled: Invalid value"),
    ({"issuer": "http://idp.example.com"}, "spec.issuer: Invalid value"),
])
def test_bad_specs_are_400_with_the_field(api, change, message):
    document = oidc_provider()
    document["spec"] = {k: v for k, v in {**document["spec"], **change}.items() if v is not None}
    response = api.post(AP, document, format="json")
    assert response.status_code == 400 and response.json()["kind"] == "Status"
    assert message in response.json()["message"]


def test_conflicts_and_reserved_names(api):
    assert api.post(AP, oidc_provider("a"), format="json").status_code == 201
    twin = api.post(AP, oidc_provider("b"), format="json")
    assert twin.status_code == 409 and "issuer and client id" in twin.json()["message"]
    assert api.post(AP, oidc_provider("a", "https://x.example.com"),
                    format="json").status_code == 409
    for name in ("oidc", "local"):
        reserved = api.post(AP, oidc_provider(name, "https://y.example.com"), format="json")
        assert reserved.status_code == 400 and "built into the server" in reserved.json()[
            "message"]


def test_roles_decide_who_writes_providers(api):
    viewer, operator = client_for("vera", "viewer"), client_for("otto", "operator")
    org_admin = client_for("olga", "org-admin")
    assert api.post(AP, oidc_provider(), format="json").status_code == 201
    assert viewer.get(AP).status_code == 200 and operator.get(f"{AP}/corp").status_code == 200
    assert viewer.post(AP, oidc_provider("v", "https://v.example.com"),
                       format="json").status_code == 403
    assert operator.delete(f"{AP}/corp").status_code == 403
    # An org admin may add a provider mapping into its own organization, not one whose users
    # join another, nor one that creates organizations from claims or grants super
    # administrators.
    own = {"type": "static", "organizationName": "default"}
    created = org_admin.post(AP, oidc_provider("o", "https://o.example.com",
                                               organizationAssignment=own), format="json")
    assert created.status_code == 201 and not created.json()["metadata"].get("annotations")
    elsewhere = org_admin.post(AP, oidc_provider("e", "https://e.example.com"), format="json")
    assert elsewhere.status_code == 403 and "another organization" in elsewhere.json()[
        "message"]
    dynamic = oidc_provider("d", "https://d.example.com", organizationAssignment={
        "type": "dynamic", "claimPath": ["orgs"]})
    refused = org_admin.post(AP, dynamic, format="json")
    assert refused.status_code == 403 and "super administrator" in refused.json()["message"]
    admins = oidc_provider("s", "https://s.example.com", roleAssignment={
        "type": "static", "roles": ["flightctl-admin"]})
    assert org_admin.post(AP, admins, format="json").status_code == 403
    assert api.post(AP, dynamic, format="json").status_code == 201


def test_auth_config_lists_enabled_providers_without_secrets(api, anon):
    assert api.post(AP, oidc_provider(), format="json").status_code == 201
    disabled = oidc_provider("off", "https://off.example.com", enabled=False)
    assert api.post(AP, disabled, format="json").status_code == 201
    config = anon.get("/api/v1/auth/config").json()
    names = [p["metadata"]["name"] for p in config["providers"]]
    assert names == ["local", "corp"] and config["defaultProvider"] == "corp"
    corp = config["providers"][1]["spec"]
    assert "clientSecret" not in corp and corp["issuer"] == "https://idp.example.com/realms/edge"


def test_other_processes_see_a_change_within_the_cache_ttl(api, settings, monkeypatch):
    """Another process's write (a row changed behind this process's back) shows once the
    cache's time is up: the table's version changed."""
    import time

    from flightctl.api import providers
    from flightctl.models import AuthProvider

    monkeypatch.setattr(settings.FLIGHTCTL, "auth_provider_cache_ttl", "1s")
    assert api.post(AP, oidc_provider(), format="json").status_code == 201
    assert [p.name for p in providers.dynamic()] == ["corp"]
    AuthProvider.objects.filter(name="corp").delete()  # as another process would
    assert [p.name for p in providers.dynamic()] == ["corp"]  # still cached
    time.sleep(1.1)
    assert providers.dynamic() == []


def test_an_org_admins_provider_is_confined_to_its_organization(api):
    """An organization administrator's provider (not trusted): whatever its IdP says, its
    users are never super administrators and join no other organization; it is shown no
    opaque tokens; a super administrator's provider rewritten by it loses its trust; and its
    name is its own across organizations."""
    import uuid

    from flightctl.api import claims, providers
    from flightctl.models import DEFAULT_ORG_ID, Organization

    org_admin = client_for("olga", "org-admin")
    own = {"type": "static", "organizationName": "default"}
    assert org_admin.post(AP, oidc_provider("o", organizationAssignment=own),
                          format="json").status_code == 201
    assert org_admin.post(AP, {**oauth2_provider(), "spec": {
        **oauth2_provider()["spec"], "organizationAssignment": own}},
        format="json").status_code == 201
    found = {p.name: p for p in providers.dynamic()}
    assert not found["o"].trusted and not found["gh"].trusted
    assert providers.opaque_token_providers() == []
    greedy = {"preferred_username": "mallory", "groups": [
        "flightctl-admin", "flightctl-operator", "default:flightctl-org-admin",
        "other:flightctl-org-admin"]}
    spec = {**found["o"].spec, "organizationAssignment": {
        "type": "dynamic", "claimPath": ["orgs"]}}  # as if stored before the rule
    who = claims.identity_for({**greedy, "orgs": ["default", "other"]},
                              providers.Provider("o", spec, org_id=DEFAULT_ORG_ID,
                                                 trusted=False))
    assert (who.superadmin, who.organizations, who.roles, who.org_roles) == (
        False, ["default"], {"operator"}, {"default": {"org-admin"}})
    trusted = claims.identity_for({**greedy, "orgs": ["default", "other"]},
                                  providers.Provider("o", spec, org_id=DEFAULT_ORG_ID))
    assert trusted.superadmin and trusted.organizations == ["default", "other"]

    # The super administrator's provider, rewritten by the org admin: no longer trusted.
    assert api.post(AP, oidc_provider("corp", "https://c.example.com",
                                      organizationAssignment=own), format="json"
                    ).status_code == 201
    assert {p.name: p for p in providers.dynamic()}["corp"].trusted
    rewritten = org_admin.put(f"{AP}/corp", oidc_provider(
        "corp", "https://evil.example.com", organizationAssignment=own), format="json")
    assert rewritten.status_code == 200 and not rewritten.json()["metadata"].get(
        "annotations")
    assert not {p.name: p for p in providers.dynamic()}["corp"].trusted

    # A name taken in one organization is taken in all.
    other = Organization.objects.create(id=uuid.uuid4(), external_id="other")
    again = api.post(f"{AP}?org_id={other.id}", oidc_provider("corp", "https://z.example.com"),
                     format="json")
    assert again.status_code == 409 and "another organization" in again.json()["message"]


def test_deleting_a_provider_removes_its_mirrored_users(api):
    from django.contrib.auth import get_user_model

    from flightctl.api import claims, providers

    assert api.post(AP, oidc_provider(), format="json").status_code == 201
    provider = providers.named("corp")
    user = claims.user_for(claims.identity_for(
        {"preferred_username": "alice", "groups": ["flightctl-viewer"]}, provider), "corp")
    get_user_model().objects.create_user("bystander")
    assert user.username == "corp:alice"
    assert api.delete(f"{AP}/corp").status_code == 200
    names = set(get_user_model().objects.values_list("username", flat=True))
    assert "corp:alice" not in names and "bystander" in names


def test_a_new_password_ends_the_refresh_tokens_of_the_old_one(anon):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("carol", password="first-pass-1")
    login = anon.post("/api/v1/auth/local/token", {"grant_type": "password",
                                                   "username": "carol",
                                                   "password": "first-pass-1"}, format="json")
    assert login.status_code == 200, login.json()
    refresh = {"grant_type": "refresh_token", "refresh_token": login.json()["refresh_token"]}
    assert anon.post("/api/v1/auth/local/token", refresh, format="json").status_code == 200
    user.set_password("second-pass-2")
    user.save()
    stale = anon.post("/api/v1/auth/local/token", refresh, format="json")
    assert stale.status_code == 400 and stale.json() == {
        "error": "invalid_grant", "error_description": "the password changed since this login"}
    wrong = anon.post("/api/v1/auth/local/token", {"grant_type": "password",
                                                   "username": "carol", "password": "nope"},
                      format="json")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_grant"


def test_secrets_go_only_where_they_were_given_for(api):
    """Plain HTTP only to loopback (``plain_http_credential_hosts``), and a stored secret is
    not kept (``*****``) for new endpoints: they need the secret itself."""
    plain = api.post(AP, oidc_provider(issuer="http://idp.example.com/realms/x"), format="json")
    assert plain.status_code == 400 and "not sent over plain HTTP to idp.example.com" in \
        plain.json()["message"]
    assert api.post(AP, oidc_provider(issuer="http://127.0.0.1:8080/realms/x"),
                    format="json").status_code == 201
    masked = oidc_provider(issuer="https://elsewhere.example.com", clientSecret="*****")
    moved = api.put(f"{AP}/corp", masked, format="json")
    assert moved.status_code == 400 and "endpoints changed" in moved.json()["message"]
    same = oidc_provider(issuer="http://127.0.0.1:8080/realms/x", clientSecret="*****",
                         displayName="Renamed")
    assert api.put(f"{AP}/corp", same, format="json").status_code == 200
    moved = oidc_provider(issuer="https://elsewhere.example.com", clientSecret="new-secret")
    assert api.put(f"{AP}/corp", moved, format="json").status_code == 200
    # A row that breaks the rule (written before it, or the setting changed) is not used.
    from flightctl.api import providers
    from flightctl.models import AuthProvider

    row = AuthProvider.objects.get(name="corp")
    AuthProvider.objects.filter(pk=row.pk).update(
        spec={**row.spec, "issuer": "http://idp.example.com"},
        resource_version=row.resource_version + 1)
    assert "corp" not in [p.name for p in providers.dynamic()]
