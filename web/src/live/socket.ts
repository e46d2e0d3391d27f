/**
 * The live-push client: one WebSocket to `/ws`, reconnected with capped exponential backoff,
 * resumed from the last sequence number it saw. Written here rather than taken from a library
 * because the resume/Resync rules are HealthFlow's own protocol (docs/realtime.md); a generic
 * reconnecting socket would still need all of the logic below.
 *
 * Two server generations are understood:
 * - topic-aware (issue 5): messages carry `topic`; the server replays what a resumed client
 *   missed, or sends `{"type": "Resync"}` when it cannot. Sequence numbers may skip (they count
 *   every message, and this client sees only its topics), so a skip is not a loss.
 * - legacy (the core's hub): no `topic`, no replay, every message to every client, seq counts
 *   every message. A reconnect or a skipped seq means something was missed: the client resyncs.
 */

export interface LiveMessage {
  seq: number;
  topic?: string;
  type: string;
  time: string;
  data: Record<string, unknown>;
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "stopped";

/** The part of the browser's WebSocket the client uses; tests pass a fake. */
export interface SocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export interface LiveOptions {
  /** Called on every (re)connect, so a token refreshed meanwhile is used. */
  url: () => string;
  topics: readonly string[];
  onMessage: (message: LiveMessage) => void;
  /** State may have been missed: reload it over HTTP. */
  onResync: (reason: string) => void;
  onState?: (state: ConnectionState) => void;
  /**
   * The server confirmed a subscription (`Subscribed` or `Resumed`): the connection's topics now,
   * and those the access filter refused. A view that loads over HTTP what a topic keeps current
   * loads once its topic is confirmed, so nothing falls between the load and the first message.
   */
  onSubscribed?: (topics: string[], refused: string[]) => void;
  /**
   * A socket closed (a reconnect follows unless stopped): its close code, and whether it had
   * opened. Browsers report a refused handshake (401, 403) only as 1006 before open, so this is
   * where the page learns that it may have to ask why.
   */
  onClose?: (code: number, opened: boolean) => void;
  createSocket?: (url: string) => SocketLike;
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** 0..1; spreads reconnects of many screens after a server restart. */
  random?: () => number;
}

export class LiveClient {
  private socket: SocketLike | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private stopped = true;
  private connections = 0;
  private lastSeq: number | null = null;
  private seqThisConnection: number | null = null;
  private topicAware = false;
  private state: ConnectionState = "stopped";
  private topics: string[];

  constructor(private readonly options: LiveOptions) {
    this.topics = [...new Set(options.topics)];
  }

  /** The topics wanted from now on: (un)subscribed at once when open, else on the next open. */
  setTopics(topics: readonly string[]): void {
    const next = [...new Set(topics)];
    const added = next.filter((t) => !this.topics.includes(t));
    const removed = this.topics.filter((t) => !next.includes(t));
    this.topics = next;
    const socket = this.socket;
    if (socket === null || this.state !== "open") return;
    if (added.length > 0) socket.send(JSON.stringify({ op: "subscribe", topics: added }));
    if (removed.length > 0) socket.send(JSON.stringify({ op: "unsubscribe", topics: removed }));
  }

  get currentTopics(): readonly string[] {
    return this.topics;
  }

  get lastSequence(): number | null {
    return this.lastSeq;
  }

  get connectionState(): ConnectionState {
    return this.state;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onclose = null;
      socket.close(1000, "client stopped");
    }
    this.setState("stopped");
  }

  private connect(): void {
    this.setState(this.connections === 0 && this.attempt === 0 ? "connecting" : "reconnecting");
    const create = this.options.createSocket ?? ((url: string) => new WebSocket(url) as SocketLike);
    let socket: SocketLike;
    try {
      socket = create(this.options.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.opened(socket);
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this.received(event.data);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.scheduleReconnect();
      this.options.onClose?.(event.code, opened);
    };
    // an error is always followed by close, which does the work
    socket.onerror = null;
  }

  private opened(socket: SocketLike): void {
    this.connections += 1;
    this.attempt = 0;
    this.seqThisConnection = null;
    // the server refuses an empty subscribe; a resume without topics keeps none either
    if (this.topics.length > 0) {
      socket.send(JSON.stringify({ op: "subscribe", topics: this.topics }));
    }
    if (this.lastSeq !== null) socket.send(JSON.stringify({ op: "resume", after: this.lastSeq }));
    this.setState("open");
    // Every connection that cannot resume starts with a reload: the first one, because what
    // happened between the HTTP load and the subscription would otherwise be lost; a legacy
    // server's, because it cannot replay what happened while we were away.
    if (this.lastSeq === null) this.resync("connected: nothing to resume from");
    else if (!this.topicAware) this.resync("reconnected to a server without replay");
  }

  private received(text: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof parsed !== "object" || parsed === null) return;
    // parsed JSON: every field is checked before use, nothing about its shape is trusted
    const message = parsed as { [K in keyof LiveMessage]?: unknown };
    if (message.type === "Resync") {
      this.resync("server asked for a resync");
      return;
    }
    if (message.type === "Subscribed" || message.type === "Resumed") {
      const control = parsed as { topics?: unknown; refused?: unknown };
      this.options.onSubscribed?.(strings(control.topics), strings(control.refused));
      return;
    }
    if (typeof message.seq !== "number" || typeof message.type !== "string") return;
    if (typeof message.topic === "string") this.topicAware = true;
    if (!this.acceptSeq(message.seq)) return;
    this.options.onMessage({
      seq: message.seq,
      type: message.type,
      time: typeof message.time === "string" ? message.time : new Date().toISOString(),
      data:
        typeof message.data === "object" && message.data !== null
          ? (message.data as Record<string, unknown>)
          : {},
      ...(typeof message.topic === "string" ? { topic: message.topic } : {}),
    });
  }

  /** Decide whether a message is new; resync when the sequence shows state was lost. */
  private acceptSeq(seq: number): boolean {
    const previous = this.lastSeq;
    const lastOnConnection = this.seqThisConnection;
    const firstOnConnection = lastOnConnection === null;
    if (lastOnConnection !== null && seq <= lastOnConnection) {
      return false; // a duplicate within one connection
    }
    this.seqThisConnection = seq;
    if (previous !== null && seq <= previous) {
      if (firstOnConnection) {
        // a new connection starting at or below what we saw: the server restarted and its
        // numbering with it; take the new numbering and reload what the old one carried
        this.lastSeq = seq;
        this.resync("server sequence restarted");
        return true;
      }
      return false;
    }
    if (previous !== null && seq > previous + 1 && !this.topicAware) {
      this.lastSeq = seq;
      this.resync(`missed messages ${previous + 1}..${seq - 1}`);
      return true;
    }
    this.lastSeq = seq;
    return true;
  }

  private resync(reason: string): void {
    this.options.onResync(reason);
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.setState("reconnecting");
    const initial = this.options.initialDelayMs ?? 500;
    const max = this.options.maxDelayMs ?? 15_000;
    const ceiling = Math.min(max, initial * 2 ** this.attempt);
    const random = this.options.random ?? Math.random;
    // "equal jitter": at least half the backoff, so a flapping server is not hammered
    const delay = ceiling / 2 + (random() * ceiling) / 2;
    this.attempt += 1;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  private setState(state: ConnectionState): void {
    if (state === this.state) return;
    this.state = state;
    this.options.onState?.(state);
  }
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}
