def handler(event, context):
    n, iters, d = event.get("nodes", 300), event.get("iters", 20), 0.85
    out = [[(i * 7 + 1) % n, (i * 13 + 5) % n, (i * 31 + 11) % n] for i in range(n)]
    rank = [1.0 / n] * n
    for _ in range(iters):
        nxt = [(1 - d) / n] * n
        for i in range(n):
            share = d * rank[i] / len(out[i])
            for j in out[i]:
                nxt[j] += share
        rank = nxt
    best = max(range(n), key=lambda i: rank[i])
    return {"top": best, "rank": rank[best]}
