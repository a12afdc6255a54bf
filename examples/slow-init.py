# Module initialization that takes >= 100 ms, paid once by the L2 seed.
import time
_t0 = time.time()
TABLE = {}
_x = 1
while time.time() - _t0 < 0.12:
    for _ in range(10000):
        _x = (_x * 48271) % 2147483647
        TABLE[_x & 0xFFFF] = _x

def handler(event, context):
    return {"entries": len(TABLE), "key": TABLE.get(event.get("k", 1))}
