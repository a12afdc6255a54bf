import json

def handler(event, context):
    n = event.get("n", 200)
    doc = {"items": [{"id": i, "name": "item-%d" % i, "tags": ["a", "b", "c"], "score": i * 1.5} for i in range(n)]}
    back = json.loads(json.dumps(doc))
    return {"items": len(back["items"]), "bytes": len(json.dumps(back))}
