"""webmail/openapi/queue.yaml against the live routes, both ways, and real responses against its schemas (jsonschema)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import jsonschema
import yaml

from webmail import api_queue

from .queueing import deferred_message, token

FRAGMENT = Path(api_queue.__file__).resolve().parent / "openapi" / "queue.yaml"
METHODS = {"get", "post", "put", "patch", "delete"}


def _doc() -> dict:
    return yaml.safe_load(FRAGMENT.read_text(encoding="utf-8"))


def _live_api_routes(web) -> set[tuple[str, str]]:
    """(METHOD, path under /api/v1) of every route the running webmail's API sub-application serves."""
    out = set()
    for resource in web.web.app.router.resources():
        sub = getattr(resource, "_app", None)
        if sub is None or resource.canonical != "/api/v1":
            continue
        for route in sub.router.routes():
            out.add((route.method, route.resource.canonical.removeprefix("/api/v1")))
    return out


def test_the_fragment_parses_and_its_refs_resolve():
    doc = _doc()
    assert set(doc) <= {"paths", "components"} and doc["paths"]
    text = FRAGMENT.read_text(encoding="utf-8")
    for line in text.splitlines():
        if "$ref:" in line:
            ref = line.split("$ref:", 1)[1].strip().strip("{}\"' ")
            node = doc
            for part in ref.removeprefix("#/").split("/"):
                node = node[part]


def test_every_documented_route_is_served_and_every_operations_route_is_documented(web):
    documented = {(m.upper(), p) for p, ops in _doc()["paths"].items() for m in ops if m in METHODS}
    live = _live_api_routes(web)
    assert documented <= live, documented - live
    ours = {(m, p) for m, p, _ in api_queue.ROUTES}
    assert ours <= documented, ours - documented


def _validate(method: str, template: str, status: int, ctype: str, body) -> None:
    doc = _doc()
    response = doc["paths"][template][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"][ctype]["schema"]
    jsonschema.Draft202012Validator({"$id": "urn:postroom:queue", "components": doc["components"], "allOf": [schema]},
                                    format_checker=jsonschema.FormatChecker()).validate(body)


async def test_real_responses_match_the_documented_schemas(web):
    qid = deferred_message(web)
    admin = token(web, "alice@city.test", "admin")
    user = token(web, "bob@city.test", "user")
    calls = [
        ("GET", "/queue", "/queue?state=deferred", admin, None), ("GET", "/queue", "/queue?limit=0", admin, None),
        ("GET", "/queue/routes", "/queue/routes", admin, None), ("GET", "/queue/{id}", f"/queue/{qid}", admin, None),
        ("GET", "/queue/{id}", "/queue/NOSUCH", admin, None), ("GET", "/queue", "/queue", user, None),
        ("POST", "/queue/{id}/hold", f"/queue/{qid}/hold", admin, None),
        ("POST", "/queue/{id}/release", f"/queue/{qid}/release", admin, None),
        ("POST", "/queue/{id}/retry", f"/queue/{qid}/retry", admin, None),
        ("GET", "/dkim", "/dkim", admin, None),
        ("POST", "/dkim/{domain}/generate", "/dkim/city.test/generate", admin, {"selector": "s1"}),
        ("POST", "/dkim/{domain}/generate", "/dkim/city.test/generate", admin, {"selector": "a b"}),
        ("GET", "/dkim", "/dkim", admin, None), ("GET", "/stats", "/stats", admin, None),
        ("DELETE", "/queue/{id}", f"/queue/{qid}", admin, None),
        ("DELETE", "/queue/{id}", f"/queue/{qid}", admin, None), ("GET", "/stats", "/stats", "bad", None),
    ]
    seen = set()
    async with aiohttp.ClientSession() as s:
        for method, template, path, secret, body in calls:
            async with s.request(method, web.url + "/api/v1" + path, json=body,
                                 headers={"Authorization": f"Bearer {secret}"}) as r:
                _validate(method, template, r.status, r.content_type, await r.json(content_type=None))
                seen.add(r.status)
    assert seen == {200, 201, 400, 401, 403, 404}
