// Task events forwarded to containerd over ttrpc (Events/Forward at $TTRPC_ADDRESS).
// One ordered queue for the whole daemon: containerd requires create -> start -> exit ->
// delete per task, so events are sent strictly one after another. Sending is off the RPC
// path; a failed send is retried with backoff and reconnect, then dropped with a log line.
import { create, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import { anyPack, timestampFromDate, type Any } from '@bufbuild/protobuf/wkt';
import type { Logger } from 'pino';
import { Events } from '../fri-proto/gen/containerd/services/ttrpc/events/v1/events_pb.js';
import { TtrpcClient } from '../protocols/ttrpc/client.js';

export const TOPIC = {
  create: '/tasks/create',
  start: '/tasks/start',
  exit: '/tasks/exit',
  delete: '/tasks/delete',
  oom: '/tasks/oom',
  execAdded: '/tasks/exec-added',
  execStarted: '/tasks/exec-started',
  paused: '/tasks/paused',
  resumed: '/tasks/resumed',
} as const;
export type Topic = (typeof TOPIC)[keyof typeof TOPIC];

interface Queued {
  namespace: string;
  topic: Topic;
  event: Any;
  at: Date;
  tries: number;
}

export interface EventSink {
  publish<D extends DescMessage>(namespace: string, topic: Topic, schema: D, msg: MessageInitShape<D>): void;
}

const MAX_TRIES = 5;

export class EventForwarder implements EventSink {
  private readonly queue: Queued[] = [];
  private client: TtrpcClient | null = null;
  private running = false;
  private closed = false;
  sent = 0;
  dropped = 0;

  constructor(private readonly address: string, private readonly log: Logger) {}

  publish<D extends DescMessage>(namespace: string, topic: Topic, schema: D, msg: MessageInitShape<D>): void {
    if (this.closed) return;
    // containerd resolves event types by bare message name (typeurl's gogo registry), not by
    // the type.googleapis.com/ prefix anyPack adds: with the prefix, CRI drops the event.
    const event = anyPack(schema, create(schema, msg));
    event.typeUrl = schema.typeName;
    this.queue.push({ namespace, topic, event, at: new Date(), tries: 0 });
    if (!this.running) void this.drain();
  }

  /** Resolves once everything queued so far has been sent or dropped. */
  async flush(timeoutMs = 5000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while ((this.queue.length > 0 || this.running) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  close(): void {
    this.closed = true;
    this.client?.close();
    this.client = null;
  }

  private async connection(): Promise<TtrpcClient> {
    if (this.client && !this.client.closed) return this.client;
    this.client = await TtrpcClient.connect(this.address.replace(/^unix:\/\//, ''), { connectTimeoutMs: 2000 });
    return this.client;
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const ev = this.queue[0] as Queued;
        try {
          const client = await this.connection();
          await client.call(Events.method.forward, {
            envelope: { timestamp: timestampFromDate(ev.at), namespace: ev.namespace, topic: ev.topic, event: ev.event },
          }, { timeoutMs: 5000, namespace: ev.namespace });
          this.queue.shift();
          this.sent++;
        } catch (e) {
          ev.tries++;
          this.client?.close();
          this.client = null;
          if (ev.tries >= MAX_TRIES) {
            this.queue.shift();
            this.dropped++;
            this.log.error({ topic: ev.topic, ns: ev.namespace, err: (e as Error).message }, 'event dropped after retries');
          } else {
            await new Promise((r) => setTimeout(r, 50 * 2 ** ev.tries));
          }
        }
      }
    } finally {
      this.running = false;
    }
  }
}
