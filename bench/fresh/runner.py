# "Fresh process per request" baseline (bench/fri.ts): python3 runner.py <module.py> [event-json]
# Loads the module (its top-level code runs now, as on every cold start without a seed), calls
# handler(event, context) on the event (argv[2], else stdin), prints the JSON result, exits.
import os, sys
# not the script's own dir on sys.path: under ctr it is the functions dir, whose json.py (the
# "json" example) would shadow the stdlib module
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
import importlib.util, json, traceback

def main():
    path = sys.argv[1]
    name = os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    raw = sys.argv[2] if len(sys.argv) > 2 else sys.stdin.read()
    event = json.loads(raw) if raw.strip() else {}
    context = {"function_name": name, "request_id": str(os.getpid())}
    result = mod.handler(event, context)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()

try:
    main()
except Exception as e:
    sys.stderr.write(json.dumps({"message": str(e), "stack": traceback.format_exc()}) + "\n")
    sys.exit(1)
