// What of an invocation error's stack a caller of the HTTP gateway may see: only the function's
// own frames. Frames under /var/task (the package, node_modules included) and frames without a
// file (the anonymous function module, `<anonymous>`, native frames) are the function's;
// anything under spore's install directory, node: internals, dist/ or another path on the host
// is not. Paths under the install directory left in message lines become "<spore>".
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** spore's install root with a trailing slash (the repository, or the directory above dist/). */
export function installRoot(): string {
  let dir = path.dirname(path.dirname(fileURLToPath(import.meta.url))); // functions/.. or dist/functions/..
  if (path.basename(dir) === 'dist') dir = path.dirname(dir);
  return dir.endsWith('/') ? dir : `${dir}/`;
}

const ROOT = installRoot();

type FrameKind = 'function' | 'other';

function classify(location: string, root: string): FrameKind {
  if (location.includes(root) || location.includes(`file://${root}`)) return 'other';
  if (/\bnode:/.test(location) || location.includes('/dist/')) return 'other';
  if (location.includes('/var/task/')) return 'function';
  // An absolute path or URL elsewhere on the host (a runtime's own library, spore elsewhere).
  if (/(^|[\s(])(\/|file:\/\/)/.test(location)) return 'other';
  return 'function'; // <anonymous>, native, evalmachine, a relative module name
}

/** Replace spore's install path in free text; drop "- <install path>" require-stack lines. */
export function scrubText(text: string, root = ROOT): string {
  const bare = root.replace(/\/$/, '');
  const requireLine = new RegExp(`^\\s*-\\s+(file://)?${escape(bare)}(/|$)`);
  return text
    .split('\n')
    .filter((l) => !requireLine.test(l))
    .join('\n')
    .replace(new RegExp(`(file://)?${escape(bare)}(?=[/\\s'"()<>,;:]|$)(/[^\\s'"()<>,;]*)?`, 'gm'), '<spore>');
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const NODE_FRAME = /^\s+at\s/;
const PY_FRAME = /^ {2}File "([^"]*)"/;
const PY_CHAIN = /^(During handling of the above exception, another exception occurred:|The above exception was the direct cause of the following exception:)$/;

function nodeStack(stack: string, root: string): string {
  const out: string[] = [];
  for (const line of stack.split('\n')) {
    if (NODE_FRAME.test(line)) {
      if (classify(line.replace(NODE_FRAME, ''), root) === 'function') out.push(line);
    } else out.push(line);
  }
  return scrubText(out.join('\n'), root);
}

/** a chained exception's lines; `traceback`: one of them is its "Traceback ..." header */
interface PySection { lines: string[]; kept: number; traceback: boolean }

function pythonStack(stack: string, root: string): string {
  const trailingNewline = stack.endsWith('\n');
  const lines = (trailingNewline ? stack.slice(0, -1) : stack).split('\n');
  // Split into chained exceptions: [section, separator, section, ...].
  const sections: { section: PySection; sep: string | null }[] = [];
  let cur: PySection = { lines: [], kept: 0, traceback: false };
  let keepingFrame = true;
  for (const line of lines) {
    if (PY_CHAIN.test(line)) {
      sections.push({ section: cur, sep: line });
      cur = { lines: [], kept: 0, traceback: false };
      keepingFrame = true;
      continue;
    }
    const m = PY_FRAME.exec(line);
    if (m) {
      const file = m[1] ?? '';
      keepingFrame = file.startsWith('/var/task/') || (file.startsWith('<') && !file.includes(root));
      if (keepingFrame) { cur.lines.push(line); cur.kept++; }
      continue;
    }
    // a frame's source lines (indented) go with their frame
    if (/^ {4}/.test(line) && cur.traceback) {
      if (keepingFrame) cur.lines.push(line);
      continue;
    }
    keepingFrame = true;
    cur.lines.push(line);
    if (line.startsWith('Traceback')) cur.traceback = true;
  }
  sections.push({ section: cur, sep: null });
  // A chained exception none of whose frames is the function's is spore's own plumbing: drop
  // it (with its separator), except the last one, which is the error itself.
  const kept = sections.filter((s, i) => i === sections.length - 1 || s.section.kept > 0);
  const text: string[] = [];
  kept.forEach((s, i) => {
    let body = s.section.lines;
    if (s.section.kept === 0) body = body.filter((l) => !l.startsWith('Traceback (most recent call last):'));
    let from = 0;
    let to = body.length;
    while (from < to && body[from] === '') from++;
    while (to > from && body[to - 1] === '') to--;
    for (let j = from; j < to; j++) text.push(body[j] as string);
    if (i < kept.length - 1) text.push('', s.sep ?? '', '');
  });
  return scrubText(text.join('\n') + (trailingNewline ? '\n' : ''), root);
}

/**
 * How much of a stack is looked at (UTF-16 units): the function writes it, and a longer one
 * (a message of 6 MB) is no use to a caller and costs spored's event loop time for every line.
 */
export const MAX_STACK_CHARS = 256 * 1024;

/**
 * The function's part of an invocation error's stack (Node or Python); null stays null. A
 * stack longer than MAX_STACK_CHARS is cut there first (the line cut through dropped), with a
 * last line saying how much was left out. Linear in the stack's length.
 */
export function functionStack(stack: string | null, root = ROOT): string | null {
  if (stack === null) return null;
  if (stack.length > MAX_STACK_CHARS) {
    const cut = stack.slice(0, MAX_STACK_CHARS);
    const head = cut.slice(0, Math.max(0, cut.lastIndexOf('\n')));
    return `${functionStack(head, root) ?? ''}\n[spore: ${stack.length - head.length} more characters of this stack left out]`;
  }
  if (/^Traceback \(most recent call last\):$/m.test(stack) || /^ {2}File "/m.test(stack)) return pythonStack(stack, root);
  return nodeStack(stack, root);
}
