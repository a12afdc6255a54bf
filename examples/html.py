import html as _html
from string import Template

PAGE = Template("<html><body><h1>$title</h1><ul>$rows</ul></body></html>")
ROW = Template("<li>$name: $value</li>")

def handler(event, context):
    rows = "".join(ROW.substitute(name=_html.escape("row<%d>" % i), value=i * i) for i in range(event.get("rows", 100)))
    page = PAGE.substitute(title=_html.escape(event.get("title", "report")), rows=rows)
    return {"length": len(page)}
