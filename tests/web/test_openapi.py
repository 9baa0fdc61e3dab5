"""The OpenAPI document against the live API both ways: every documented operation is routed, every route documented, answers match."""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import jsonschema
import pytest

from webmail import openapi

from mailboxes.events import Sources

from . import openapi_check
from .documents import PDF, documents_server, manifest, register_incoming, setup_documents
from .queueing import deferred_message
from .people import Api, make_org


@pytest.fixture
def web(tmp_path):
    """The whole server with official documents configured (their routes answer successfully too)."""
    srv = documents_server(tmp_path).start()
    yield srv
    srv.stop()


def _live_operations(web) -> set[tuple[str, str]]:
    """(METHOD, path under /api/v1) of every route of the running server's API sub-application."""
    out = set()
    for route in web.web.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith(openapi.SERVER_URL + "/") and route.method != "HEAD":
            out.add((route.method, path[len(openapi.SERVER_URL):]))
    return out


def test_the_document_is_valid_openapi_3_1_in_shape():
    doc = openapi.load()
    assert doc["openapi"].startswith("3.1") and doc["paths"]
    for url, item in doc["paths"].items():
        assert url.startswith("/")
        for method, op in item.items():
            if method not in openapi.METHODS:
                continue
            assert op.get("operationId") and op.get("responses"), (method, url)
            for resp in op["responses"].values():
                for media in resp.get("content", {}).values():
                    jsonschema.Draft202012Validator.check_schema(media["schema"])
    ids = [op["operationId"] for item in doc["paths"].values() for m, op in item.items() if m in openapi.METHODS]
    assert len(ids) == len(set(ids))


def test_fragments_may_not_repeat_one_another(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("paths:\n  /x:\n    get: {responses: {}}\n")
    (tmp_path / "b.yaml").write_text("paths:\n  /x:\n    get: {responses: {}}\n")
    with pytest.raises(openapi.FragmentError):
        openapi.load(tmp_path)
    (tmp_path / "b.yaml").write_text("components:\n  schemas:\n    Problem: {}\n")
    with pytest.raises(openapi.FragmentError):
        openapi.load(tmp_path)
    (tmp_path / "b.yaml").write_text("info: {}\n")
    with pytest.raises(openapi.FragmentError):
        openapi.load(tmp_path)


async def test_documented_and_live_operations_are_the_same_both_ways(web):
    documented = openapi.operations(openapi.load())
    live = _live_operations(web)
    assert live, "no /api/v1 routes found"
    assert documented - live == set(), "documented but not routed"
    assert live - documented == set(), "routed but not documented"


async def test_the_document_is_served_without_a_token(web):
    async with aiohttp.ClientSession() as s, s.get(web.url + "/api/v1/openapi.json") as r:
        assert r.status == 200 and r.content_type == "application/json"
        assert await r.json() == openapi.load()
        openapi_check.validate_response("GET", "/openapi.json", r, await r.json())


async def test_every_documented_operation_answers_as_documented(web):
    """A walk through every operation, each answer validated; then every operation has been seen."""
    org = make_org(web)
    openapi_check.SEEN.clear()
    api = Api(web, org.tokens["alice@city.test"], check=openapi_check.validate_response)
    walk = [
        ("GET", "/openapi.json", None, 200),
        ("GET", "/accounts?q=city&limit=2", None, 200),
        ("POST", "/accounts", {"address": "w@city.test", "department": "fin"}, 201),
        ("GET", "/accounts/w@city.test", None, 200),
        ("PATCH", "/accounts/w@city.test", {"quota_bytes": 10}, 200),
        ("POST", "/accounts/w@city.test/password", None, 200),
        ("GET", "/departments", None, 200),
        ("POST", "/departments", {"code": "w", "name": "W"}, 201),
        ("GET", "/departments/w", None, 200),
        ("PATCH", "/departments/w", {"name": "WW"}, 200),
        ("GET", "/groups", None, 200),
        ("POST", "/groups", {"address": "wg@city.test"}, 201),
        ("GET", "/groups/wg@city.test", None, 200),
        ("POST", "/groups/wg@city.test/members", {"add": ["w@city.test"]}, 200),
        ("DELETE", "/groups/wg@city.test", None, 204),
        ("GET", "/aliases", None, 200),
        ("POST", "/aliases", {"address": "wa@city.test", "target": "w@city.test"}, 201),
        ("GET", "/aliases/wa@city.test", None, 200),
        ("DELETE", "/aliases/wa@city.test", None, 204),
        ("GET", "/aliases/wa@city.test", None, 404),
        ("POST", "/accounts", {"address": "w@city.test"}, 409),
    ]
    # The workflow events routes (issue 11): a source system's token, and a person's own preferences.
    source = Api(web, await _source_token(web), check=openapi_check.validate_response)
    ev = {"id": "oa-1", "type": "approval_request", "recipients": ["alice@city.test"], "title": "请审批", "body": "采购",
          "link": "https://oa.city.test/items/1", "urgency": "normal", "locale": "zh"}
    walk_events = [
        (source, "POST", "/events", ev, 202),
        (source, "POST", "/events/batch", {"events": [{**ev, "id": "oa-2"}]}, 202),
        (source, "GET", "/events/oa-1", None, 200),
        (api, "GET", "/events/preferences", None, 200),
        (api, "PUT", "/events/preferences", {"modes": {"reminder": "daily"}}, 200),
        (api, "GET", "/events/preferences/alice@city.test", None, 200),
        (api, "PUT", "/events/preferences/alice@city.test", {"modes": {"reminder": "hourly"}}, 200),
    ]
    # The operations routes (queue, DKIM, dashboard): a message deferred on a closed port to act on.
    qid = deferred_message(web)
    walk_ops = [
        (api, "GET", "/queue?state=deferred", None, 200), (api, "GET", "/queue/routes", None, 200),
        (api, "GET", f"/queue/{qid}", None, 200), (api, "POST", f"/queue/{qid}/hold", None, 200),
        (api, "POST", f"/queue/{qid}/release", None, 200), (api, "POST", f"/queue/{qid}/retry", None, 200),
        (api, "GET", "/dkim", None, 200), (api, "POST", "/dkim/city.test/generate", {"selector": "s1"}, 201),
        (api, "GET", "/stats", None, 200), (api, "DELETE", f"/queue/{qid}", None, 200),
        (api, "GET", "/audit?limit=5", None, 200),  # the audit log (issue 13): the actions above are in it
    ]
    # Official documents (issue 12): a dispatcher's token, and a registrar's for the incoming side.
    docs = setup_documents(web)
    dispatcher, registrar = (Api(web, secret, check=openapi_check.validate_response)
                             for secret in (docs.dispatcher, docs.registrar))
    reg_id = register_incoming(web)
    walk_docs = [
        (dispatcher, "POST", "/documents", {"document": manifest(), "files": {"a.pdf": base64.b64encode(PDF).decode()}},
         201),
        (dispatcher, "GET", "/documents", None, 200), (dispatcher, "GET", "/documents/1", None, 200),
        (dispatcher, "GET", "/documents/2", None, 404),
        (registrar, "GET", "/incoming", None, 200), (registrar, "POST", f"/incoming/{reg_id}/sign", None, 200),
    ]
    doc = openapi.load()
    for caller, method, path, body, want in [(api, *w) for w in walk] + walk_events + walk_ops + walk_docs:
        status, _, _ = await caller(method, path, body)
        assert (method, path, status) == (method, path, want)
        if body is not None and status < 400:  # what the server accepted is what the document allows
            op = doc["paths"][openapi_check.documented_path(path)][method.lower()]
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            jsonschema.Draft202012Validator({"components": doc["components"], **schema}).validate(body)
    documented = openapi.operations(openapi.load())
    seen_ok = {(m, url) for m, url, key in openapi_check.SEEN if key != "default"}
    assert documented - seen_ok == set(), "documented operations never answered successfully"
    assert any(key == "default" for *_, key in openapi_check.SEEN)


async def _source_token(web) -> str:
    _, secret, _ = await Sources(web.mb.router.central).add("oa")
    return secret
