"""docs/webhooks.md's example request is what the sender signs, and the reference library accepts it."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from standardwebhooks import Webhook

from bridges.outbox import build_body
from bridges.webhooks import signed_headers

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def test_the_documented_example_is_signed_as_the_sender_signs():
    text = DOC.read_text(encoding="utf-8")
    block = text.split("POST /hooks/postroom HTTP/1.1\n", 1)[1].split("```", 1)[0]
    head, body = block.split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in head.splitlines())
    body = body.strip().encode("utf-8")
    secret = re.search(r"example secret `(whsec_[A-Za-z0-9+/=]+)`", text).group(1)
    stamp = int(headers["webhook-timestamp"])
    when = datetime.fromtimestamp(stamp, tz=timezone.utc)
    assert body == build_body("delivered", {"event": "ev-1"}, when)
    ours = signed_headers(secret, headers["webhook-id"], stamp, body)
    assert {k: ours[k] for k in headers} == headers
    assert Webhook(secret).sign(headers["webhook-id"], when, body.decode()) == headers["webhook-signature"]
