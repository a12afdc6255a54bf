// A small pagerank over a random graph (graph built per request)
module.exports.handler = async (event) => {
  const n = event.nodes ?? 300, iters = event.iters ?? 20, d = 0.85;
  const out = Array.from({ length: n }, (_, i) => [(i * 7 + 1) % n, (i * 13 + 5) % n, (i * 31 + 11) % n]);
  let rank = new Float64Array(n).fill(1 / n);
  for (let k = 0; k < iters; k++) {
    const next = new Float64Array(n).fill((1 - d) / n);
    for (let i = 0; i < n; i++) for (const j of out[i]) next[j] += (d * rank[i]) / out[i].length;
    rank = next;
  }
  let best = 0;
  for (let i = 1; i < n; i++) if (rank[i] > rank[best]) best = i;
  return { top: best, rank: rank[best] };
};
