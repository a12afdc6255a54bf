// What of an invocation error's stack the gateway shows: the function's own frames only.
import { describe, expect, it } from 'vitest';
import { MAX_STACK_CHARS, functionStack, installRoot, scrubText } from '../functions/stack.js';

const ROOT = '/opt/spore/';

describe('functionStack (Node)', () => {
  it("keeps the message and the function's frames; drops spore's (install dir, dist/), node: internals and other host paths", () => {
    const stack = [
      'Error: bad {"a":1}',
      '    at inner (/var/task/index.js:1:27)',
      '    at Array.map (<anonymous>)',
      '    at /var/task/node_modules/lib/x.js:2:43',
      '    at call (file:///opt/spore/dist/seeds/node/seed.js:421:28)',
      '    at runInstance (/opt/spore/dist/seeds/node/seed.js:456:29)',
      '    at Module._compile (node:internal/modules/cjs/loader:1256:14)',
      '    at emit (node:events:517:28)',
      '    at x (/elsewhere/dist/y.js:1:1)',
      '    at z (/usr/lib/node_modules/npm/index.js:1:1)',
      '    at async runLanguageSeed (file:///opt/spore/dist/seeds/node/seed.js:285:5)',
    ].join('\n');
    expect(functionStack(stack, ROOT)).toBe([
      'Error: bad {"a":1}',
      '    at inner (/var/task/index.js:1:27)',
      '    at Array.map (<anonymous>)',
      '    at /var/task/node_modules/lib/x.js:2:43',
    ].join('\n'));
  });

  it('keeps frames of the anonymous function module (no file) and scrubs install paths from message lines', () => {
    const stack = [
      "Error: Cannot find module './nope'",
      'Require stack:',
      '- /var/task/index.js',
      '- /opt/spore/dist/seeds/node/seed.js',
      '    at evalmachine.<anonymous>:3:9',
      '    at handler (<anonymous>:1:1)',
      '    at load (/opt/spore/dist/seeds/node/seed.js:10:1)',
    ].join('\n');
    expect(functionStack(stack, ROOT)).toBe([
      "Error: Cannot find module './nope'",
      'Require stack:',
      '- /var/task/index.js',
      '    at evalmachine.<anonymous>:3:9',
      '    at handler (<anonymous>:1:1)',
    ].join('\n'));
  });

  it('null stays null; a stack of spore frames only keeps its message', () => {
    expect(functionStack(null, ROOT)).toBeNull();
    expect(functionStack('Error: x\n    at f (/opt/spore/dist/a.js:1:1)', ROOT)).toBe('Error: x');
  });
});

describe('functionStack (Python)', () => {
  it("drops the seed's chained control exception and its own frames (the real traceback of a raise in a handler)", () => {
    const stack = 'Next: instance\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n'
      + '  File "/opt/spore/seeds/python/zygote.py", line 830, in run_instance\n'
      + '  File "/var/task/handler.py", line 4, in handler\n    return inner(event)\n           ^^^^^^^^^^^^\n'
      + '  File "/var/task/handler.py", line 2, in inner\n    raise ValueError(\'bad %r\' % (e,))\n'
      + "ValueError: bad {'a': 1}\n";
    expect(functionStack(stack, ROOT)).toBe('Traceback (most recent call last):\n'
      + '  File "/var/task/handler.py", line 4, in handler\n    return inner(event)\n           ^^^^^^^^^^^^\n'
      + '  File "/var/task/handler.py", line 2, in inner\n    raise ValueError(\'bad %r\' % (e,))\n'
      + "ValueError: bad {'a': 1}\n");
  });

  it("keeps the function's own chained exceptions; drops stdlib and spore frames with their source lines", () => {
    const stack = 'Traceback (most recent call last):\n'
      + '  File "/var/task/main.py", line 3, in parse\n    return json.loads(s)\n'
      + '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n    return _default_decoder.decode(s)\n'
      + 'json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n'
      + '\nThe above exception was the direct cause of the following exception:\n\n'
      + 'Traceback (most recent call last):\n'
      + '  File "/opt/spore/seeds/python/zygote.py", line 830, in run_instance\n    result = fn(event, ctx)\n'
      + '  File "/var/task/main.py", line 7, in handler\n    raise ValueError("bad") from e\n'
      + 'ValueError: bad\n';
    expect(functionStack(stack, ROOT)).toBe('Traceback (most recent call last):\n'
      + '  File "/var/task/main.py", line 3, in parse\n    return json.loads(s)\n'
      + 'json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n'
      + '\nThe above exception was the direct cause of the following exception:\n\n'
      + 'Traceback (most recent call last):\n'
      + '  File "/var/task/main.py", line 7, in handler\n    raise ValueError("bad") from e\n'
      + 'ValueError: bad\n');
  });

  it("an error raised in spore's code keeps only its exception line", () => {
    const stack = 'Traceback (most recent call last):\n  File "/opt/spore/seeds/python/zygote.py", line 1, in x\n    boom()\nRuntimeError: seed failed\n';
    expect(functionStack(stack, ROOT)).toBe('RuntimeError: seed failed\n');
  });
});

describe('stacks the function wrote to hurt (red team, helper-55): linear, and cut', () => {
  // A stack is the function's text: 6 MB of indented lines under a Traceback header made the
  // line-by-line pass rescan every line before it (50 s of spored's event loop for 1.8 MB).
  // These run within vitest's 5 s timeout only if each line is looked at a bounded number of times.
  it('300,000 indented lines after a frame (Node and Python forms): cut at MAX_STACK_CHARS, saying how much was left out', () => {
    const py = 'Traceback (most recent call last):\n  File "/var/task/main.py", line 1, in handler\n' + '    a\n'.repeat(300_000) + 'Exception: x\n';
    const out = functionStack(py, ROOT) ?? '';
    expect(out.length).toBeLessThanOrEqual(MAX_STACK_CHARS + 100);
    expect(out).toMatch(/^Traceback \(most recent call last\):\n {2}File "\/var\/task\/main\.py"/);
    expect(out).toMatch(/\n\[spore: \d+ more characters of this stack left out\]$/);
    const node = 'Error: x\n  File "x"\n' + '    a\n'.repeat(300_000) + '    at handler (/var/task/index.js:1:1)';
    expect(functionStack(node, ROOT)).toMatch(/more characters of this stack left out\]$/);
  });

  it('just under the cut, a chained traceback made of separators and indented lines: whole, in linear time', () => {
    const unit = 'During handling of the above exception, another exception occurred:\n' + '    a\n'.repeat(20);
    const stack = 'Traceback (most recent call last):\n' + unit.repeat(Math.floor((MAX_STACK_CHARS - 100) / unit.length));
    expect(stack.length).toBeLessThan(MAX_STACK_CHARS);
    const out = functionStack(stack, ROOT) ?? '';
    expect(out).not.toMatch(/left out/);
    expect(out.length).toBeGreaterThan(0);
  });

  it('a message of many lines: one pattern for all of them', () => {
    const text = '/opt/spore/dist/x.js\n'.repeat(200_000);
    expect(scrubText(text, ROOT).split('\n').filter((l) => l === '<spore>')).toHaveLength(200_000);
  });
});

describe('scrubText', () => {
  it('replaces paths under the install dir, whole, and nothing that merely starts like it', () => {
    expect(scrubText('at /opt/spore/dist/x.js:1 and file:///opt/spore/seeds/a.py, /opt/sporex/y', ROOT)).toBe('at <spore> and <spore>, /opt/sporex/y');
  });

  it('knows its own install root', () => {
    expect(installRoot()).toMatch(/\/$/);
    expect(installRoot()).not.toMatch(/\/dist\/$/);
  });
});
