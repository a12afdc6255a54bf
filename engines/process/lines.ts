// Newline-delimited JSON over a stream: the framing spored, seeds and sandboxes use among
// themselves (one object per line). Malformed lines go to onBad, never throw.
// A handler that destroys the stream gets no further lines, not even those already read:
// a seed that forks inside a handler continues in the child, which destroys its copy of
// the connection and must not go on to act on the seed's next messages.
import type { Readable } from 'node:stream';

export function onJsonLines<T>(stream: Readable, onMessage: (msg: T) => void, onBad?: (line: string) => void): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while (!stream.destroyed && (nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let msg: T;
      try {
        msg = JSON.parse(line) as T;
      } catch {
        onBad?.(line);
        continue;
      }
      onMessage(msg);
    }
  });
}
