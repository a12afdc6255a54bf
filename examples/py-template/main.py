# spore package example (Python): deploy the directory examples/py-template with handler
# `main.handler`. jinja2 and markupsafe are vendored into ./vendor by scripts/example-deps.sh
# (copied from Debian's python3-jinja2 / python3-markupsafe); the sandbox has only the stdlib.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_VENDOR = os.path.join(_HERE, "vendor")
if _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)

import jinja2  # noqa: E402  (vendored)

# Init code (runs once, in the seed): loader relative to this file, template compiled now,
# so the handler only renders. /var/task is read-only: no bytecode cache is written.
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.join(_HERE, "templates")),
    autoescape=True,
    auto_reload=False,
)
_PAGE = _ENV.get_template("page.html")


def handler(event, context):
    event = event or {}
    items = event.get("items") or []
    html = _PAGE.render(
        title=str(event.get("title", "untitled")),
        items=[str(i) for i in items],
        function_name=getattr(context, "function_name", ""),
    )
    return {"html": html}
