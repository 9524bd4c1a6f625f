"""``check-oci-tag`` and ``check-oci-image`` against a real ``docker-registry`` on loopback."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.gitservers", "tests.registries")

from tests.gitservers import REGISTRY_PASSWORD, REGISTRY_USER  # noqa: E402
from tests.net import free_port  # noqa: E402
from tests.registries import IMAGE, TAG, push_image  # noqa: E402
from tests.test_openapi_conformance import assert_valid  # noqa: E402
from tests.test_repositories import check, put_repo  # noqa: E402

pytest_plugins = ["tests.gitservers", "tests.registries"]
pytestmark = pytest.mark.django_db

REPOS = "/api/v1/repositories"


def oci_repo(api, name: str, registry: str, password: str | None = REGISTRY_PASSWORD, **extra):
    spec = {"type": "oci", "registry": registry, "scheme": "http", **extra}
    if password is not None:
        spec["ociAuth"] = {"authType": "docker", "username": REGISTRY_USER, "password": password}
    put_repo(api, name, spec)


def check_tag(api, repo: str, image: str, tag: str):
    return api.post(f"{REPOS}/{repo}/check-oci-tag", {"imageName": image, "tag": tag},
                    format="json")


def check_image(api, repo: str, image: str):
    return api.post(f"{REPOS}/{repo}/check-oci-image", {"imageName": image}, format="json")


def result(response) -> dict:
    assert response.status_code == 200, response.json()
    body = response.json()
    assert_valid(body, "CheckRepositoryOciResult")
    return body


@pytest.fixture(scope="module")
def pushed(oci_registry):
    push_image(oci_registry, "centos-bootc/centos-bootc", "9.5")
    return oci_registry


def test_an_existing_tag_and_image_are_accessible(api, pushed):
    oci_repo(api, "reg", pushed)
    assert result(check_tag(api, "reg", "centos-bootc/centos-bootc", "9.5")) == {
        "accessible": True}
    assert result(check_image(api, "reg", "centos-bootc/centos-bootc")) == {"accessible": True}


def test_a_missing_tag_or_image_is_reported_with_the_registrys_status(api, pushed):
    oci_repo(api, "reg", pushed)
    missing_tag = result(check_tag(api, "reg", "centos-bootc/centos-bootc", "10.0"))
    assert missing_tag == {"accessible": False, "errorCode": 404, "errorMessage":
                           f"{pushed}/centos-bootc/centos-bootc:10.0: not found"}
    missing_image = result(check_image(api, "reg", "nobody/here"))
    assert missing_image["accessible"] is False and missing_image["errorCode"] == 404
    assert "nobody/here" in missing_image["errorMessage"]


def test_credentials_come_from_the_repository_and_never_show(api, pushed):
    oci_repo(api, "wrong", pushed, password="wrong-password")
    denied = result(check_tag(api, "wrong", "centos-bootc/centos-bootc", "9.5"))
    assert denied["accessible"] is False and denied["errorCode"] == 401
    assert "wrong-password" not in json.dumps(denied)
    oci_repo(api, "anonymous", pushed, password=None)
    anonymous = result(check_image(api, "anonymous", "centos-bootc/centos-bootc"))
    assert anonymous == {"accessible": False, "errorCode": 401, "errorMessage":
                         f"{pushed}/centos-bootc/centos-bootc: {pushed} requires credentials"}


def test_a_registry_with_token_authentication(api, token_registry):
    """The quay.io scheme: a Bearer challenge, a token from the realm for the Repository's
    credentials and the challenge's scope, the request again with the token."""
    host, tokens = token_registry
    oci_repo(api, "quay", host)
    tokens.requests.clear()
    assert result(check_tag(api, "quay", IMAGE, TAG)) == {"accessible": True}
    assert result(check_image(api, "quay", IMAGE)) == {"accessible": True}
    scopes = [request["path"] for request in tokens.requests]
    assert len(scopes) == 2 and all(f"scope=repository%3A{IMAGE.replace('/', '%2F')}%3Apull"
                                    in path for path in scopes), scopes
    missing = result(check_tag(api, "quay", IMAGE, "10.0"))
    assert missing["accessible"] is False and missing["errorCode"] == 404
    oci_repo(api, "quay-wrong", host, password="wrong-password")
    refused = result(check_tag(api, "quay-wrong", IMAGE, TAG))
    assert refused == {"accessible": False, "errorCode": 401, "errorMessage": (
        f"{host}/{IMAGE}:{TAG}: the registry's token service rejected the credentials")}
    # The periodic accessibility test goes the same way to the registry's /v2/.
    assert check(api, "quay")["status"] == "True"
    assert "rejected the credentials" in check(api, "quay-wrong")["message"]


def test_an_unreachable_registry_has_no_error_code(api):
    oci_repo(api, "gone", f"127.0.0.1:{free_port()}")
    gone = result(check_tag(api, "gone", "a/b", "1"))
    assert gone["accessible"] is False and "errorCode" not in gone
    assert "cannot reach registry" in gone["errorMessage"]


@pytest.mark.parametrize(("body", "message"), [
    ({"imageName": "a/b"}, "tag: Required value"),
    ({"tag": "1"}, "imageName: Required value"),
    ({"imageName": "a/b", "tag": "-bad"}, 'tag: Invalid value: "-bad"'),
    ({"imageName": "../../v2/_catalog", "tag": "1"}, "imageName: Invalid value"),
    ({"imageName": "a?x=1", "tag": "1"}, "imageName: Invalid value"),
    ({"imageName": "a" * 256, "tag": "1"}, "imageName: Too long"),
    ({"imageName": "a/b", "tag": "1", "extra": 1}, 'extra: Invalid value: "extra": unknown'),
    ([], "must be an object"),
])
def test_a_bad_request_is_a_400_status(api, body, message):
    oci_repo(api, "reg", "127.0.0.1:1")
    response = api.post(f"{REPOS}/reg/check-oci-tag", body, format="json")
    assert response.status_code == 400
    assert response.json()["kind"] == "Status"
    assert message in response.json()["message"]


def test_the_repository_must_exist_and_be_an_oci_registry(api):
    missing = check_image(api, "nope", "a/b")
    assert missing.status_code == 404
    assert missing.json()["message"] == 'Repository of name "nope" not found'
    put_repo(api, "web", {"type": "http", "url": "https://example.com"})
    wrong = check_image(api, "web", "a/b")
    assert wrong.status_code == 400
    assert wrong.json()["message"] == 'Repository "web" is of type "http", not "oci"'
    assert api.post(f"{REPOS}/web/check-oci-other", {}, format="json").status_code in (404, 405)


def test_the_openapi_document_lists_the_checks(anon):
    paths = anon.get("/api/v1/openapi.json").json()["paths"]
    tag = paths["/api/v1/repositories/{name}/check-oci-tag"]["post"]
    assert tag["operationId"] == "checkRepositoryOciTag"
    assert tag["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "imageName", "tag"]
    assert paths["/api/v1/repositories/{name}/check-oci-image"]["post"]["operationId"] == (
        "checkRepositoryOciImage")
