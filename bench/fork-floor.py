# The machine's fork floor for a Python process (bench/demo.ts): python3 fork-floor.py [N]
# forks this idle interpreter N times (child os._exit(0), parent waits) and prints
# {"n":N,"samples":[ms,...]}: fork + exit + wait per sample, in milliseconds.
import json, os, sys, time
n = max(1, int(sys.argv[1]) if len(sys.argv) > 1 else 50)
samples = []
for i in range(n + 3):
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    if i >= 3:
        samples.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"n": n, "samples": samples}))
