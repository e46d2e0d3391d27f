import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { LiveClient, type LiveMessage, type LiveOptions, type SocketLike } from "./socket";

class FakeSocket implements SocketLike {
  sent: unknown[] = [];
  closed = false;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }

  close(): void {
    this.closed = true;
  }

  open(): void {
    this.onopen?.({});
  }

  deliver(message: object | string): void {
    this.onmessage?.({ data: typeof message === "string" ? message : JSON.stringify(message) });
  }

  drop(code = 1006): void {
    this.onclose?.({ code });
  }
}

function harness(overrides: Partial<LiveOptions> = {}) {
  const sockets: FakeSocket[] = [];
  const messages: LiveMessage[] = [];
  const resyncs: string[] = [];
  const states: string[] = [];
  const client = new LiveClient({
    url: () => "ws://test/ws",
    topics: ["patients"],
    onMessage: (m) => messages.push(m),
    onResync: (r) => resyncs.push(r),
    onState: (s) => states.push(s),
    createSocket: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    initialDelayMs: 100,
    maxDelayMs: 1000,
    random: () => 1,
    ...overrides,
  });
  const last = () => {
    const socket = sockets.at(-1);
    if (!socket) throw new Error("no socket opened");
    return socket;
  };
  return { client, sockets, messages, resyncs, states, last };
}

const legacy = (seq: number, type = "PatientStatusUpdated") => ({
  seq,
  type,
  time: "2026-11-25T09:00:00+00:00",
  data: { patient_id: "p1", version: seq },
});
const topical = (seq: number) => ({ ...legacy(seq), topic: "patients" });

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("LiveClient", () => {
  it("subscribes to its topics as soon as the socket opens", () => {
    const { client, last } = harness();
    client.start();
    last().open();
    expect(last().sent).toEqual([{ op: "subscribe", topics: ["patients"] }]);
    expect(client.connectionState).toBe("open");
  });

  it("delivers messages in order and tracks the last sequence number", () => {
    const { client, last, messages } = harness();
    client.start();
    last().open();
    last().deliver(legacy(1));
    last().deliver(legacy(2));
    expect(messages.map((m) => m.seq)).toEqual([1, 2]);
    expect(client.lastSequence).toBe(2);
  });

  it("reconnects after a drop with growing, capped delays", () => {
    const { client, sockets, last } = harness();
    client.start();
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      last().drop();
      const before = sockets.length;
      const started = Date.now();
      while (sockets.length === before) vi.advanceTimersByTime(10);
      delays.push(Date.now() - started);
    }
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(client.connectionState).toBe("reconnecting");
  });

  it("starts the backoff again once a connection opens", () => {
    const { client, sockets, last } = harness();
    client.start();
    last().drop();
    vi.advanceTimersByTime(100);
    last().drop();
    vi.advanceTimersByTime(200);
    last().open();
    last().drop();
    const before = sockets.length;
    vi.advanceTimersByTime(99);
    expect(sockets.length).toBe(before);
    vi.advanceTimersByTime(1);
    expect(sockets.length).toBe(before + 1);
  });

  it("asks to resume after the last sequence it saw when it reconnects", () => {
    const { client, last } = harness();
    client.start();
    last().open();
    last().deliver(topical(7));
    last().drop();
    vi.advanceTimersByTime(100);
    last().open();
    expect(last().sent).toEqual([
      { op: "subscribe", topics: ["patients"] },
      { op: "resume", after: 7 },
    ]);
  });

  it("reloads once connected, since nothing can be resumed yet", () => {
    const { client, last, resyncs } = harness();
    client.start();
    expect(resyncs).toEqual([]);
    last().open();
    expect(resyncs).toEqual(["connected: nothing to resume from"]);
  });

  it("takes the replay of a topic-aware server without a resync, dropping duplicates", () => {
    const { client, last, messages, resyncs } = harness();
    client.start();
    last().open();
    resyncs.length = 0;
    last().deliver(topical(1));
    last().deliver(topical(2));
    last().drop();
    vi.advanceTimersByTime(100);
    last().open();
    last().deliver(topical(3));
    last().deliver(topical(3));
    last().deliver(topical(5));
    expect(messages.map((m) => m.seq)).toEqual([1, 2, 3, 5]);
    expect(resyncs).toEqual([]);
  });

  it("resyncs after reconnecting to a legacy server, which cannot replay", () => {
    const { client, last, resyncs } = harness();
    client.start();
    last().open();
    last().deliver(legacy(1));
    resyncs.length = 0;
    last().drop();
    vi.advanceTimersByTime(100);
    expect(resyncs).toEqual([]);
    last().open();
    expect(resyncs).toEqual(["reconnected to a server without replay"]);
  });

  it("resyncs when a legacy server's sequence skips", () => {
    const { client, last, messages, resyncs } = harness();
    client.start();
    last().open();
    last().deliver(legacy(1));
    resyncs.length = 0;
    last().deliver(legacy(4));
    expect(resyncs).toEqual(["missed messages 2..3"]);
    expect(messages.map((m) => m.seq)).toEqual([1, 4]);
  });

  it("resyncs and reloads when the server says Resync", () => {
    const { client, last, resyncs, messages } = harness();
    client.start();
    last().open();
    last().deliver(topical(10));
    resyncs.length = 0;
    last().deliver({ type: "Resync" });
    expect(resyncs).toEqual(["server asked for a resync"]);
    expect(messages).toHaveLength(1);
  });

  it("takes a restarted server's new numbering and resyncs", () => {
    const { client, last, messages, resyncs } = harness();
    client.start();
    last().open();
    last().deliver(topical(40));
    resyncs.length = 0;
    last().drop();
    vi.advanceTimersByTime(100);
    last().open();
    last().deliver(topical(1));
    last().deliver(topical(2));
    expect(resyncs).toEqual(["server sequence restarted"]);
    expect(messages.map((m) => m.seq)).toEqual([40, 1, 2]);
    expect(client.lastSequence).toBe(2);
  });

  it("ignores frames that are not protocol messages", () => {
    const { client, last, messages, resyncs } = harness();
    client.start();
    last().open();
    resyncs.length = 0;
    last().deliver("not json");
    last().deliver({ hello: "world" });
    last().deliver(legacy(1));
    expect(messages.map((m) => m.seq)).toEqual([1]);
    expect(resyncs).toEqual([]);
  });

  it("does not reconnect once stopped", () => {
    const { client, sockets, last } = harness();
    client.start();
    last().open();
    const socket = last();
    client.stop();
    expect(socket.closed).toBe(true);
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(1);
    expect(client.connectionState).toBe("stopped");
  });

  it("asks for the URL again on every connection, so a refreshed token is used", () => {
    let n = 0;
    const { client, sockets, last } = harness({ url: () => `ws://test/ws?access_token=t${++n}` });
    client.start();
    last().drop();
    vi.advanceTimersByTime(100);
    expect(sockets.map((s) => s.url)).toEqual([
      "ws://test/ws?access_token=t1",
      "ws://test/ws?access_token=t2",
    ]);
  });

  it("subscribes to topics added while open and unsubscribes from those dropped", () => {
    const { client, last } = harness();
    client.start();
    last().open();
    client.setTopics(["patients", "patient:p1", "metrics"]);
    client.setTopics(["patients", "metrics"]);
    expect(last().sent).toEqual([
      { op: "subscribe", topics: ["patients"] },
      { op: "subscribe", topics: ["patient:p1", "metrics"] },
      { op: "unsubscribe", topics: ["patient:p1"] },
    ]);
  });

  it("subscribes to the topics wanted now when it (re)connects, in one frame", () => {
    const { client, last } = harness();
    client.setTopics(["patients", "alerts"]); // before start: nothing to send yet
    client.start();
    last().open();
    last().deliver(topical(3));
    last().drop();
    client.setTopics(["alerts", "ward:ICU"]); // while reconnecting: sent with the next open
    vi.advanceTimersByTime(100);
    last().open();
    expect(last().sent).toEqual([
      { op: "subscribe", topics: ["alerts", "ward:ICU"] },
      { op: "resume", after: 3 },
    ]);
  });

  it("sends no empty subscription", () => {
    const { client, last } = harness({ topics: [] });
    client.start();
    last().open();
    client.setTopics([]);
    expect(last().sent).toEqual([]);
  });

  it("reports the topics the server confirmed and refused", () => {
    const confirmed: [string[], string[]][] = [];
    const { client, messages, last } = harness({
      onSubscribed: (topics, refused) => confirmed.push([topics, refused]),
    });
    client.start();
    last().open();
    last().deliver({ type: "Subscribed", topics: ["patients"], refused: ["alerts"], head: 4 });
    last().deliver({ type: "Resumed", topics: ["patients", "metrics"], refused: [], after: 1 });
    last().deliver({ type: "Subscribed", topics: "not a list" });
    expect(confirmed).toEqual([
      [["patients"], ["alerts"]],
      [["patients", "metrics"], []],
      [[], []],
    ]);
    expect(messages).toEqual([]);
  });
});

describe("closes", () => {
  it("are reported with their code and whether the socket had opened", async () => {
    const closes: [number, boolean][] = [];
    const { client, last } = harness({ onClose: (code, opened) => closes.push([code, opened]) });
    client.start();
    last().drop(1006); // refused handshake: never opened
    await vi.advanceTimersByTimeAsync(1000);
    last().open();
    last().drop(4401);
    expect(closes).toEqual([
      [1006, false],
      [4401, true],
    ]);
  });

  it("are not reported after the client stopped", () => {
    const closes: number[] = [];
    const { client, last } = harness({ onClose: (code) => closes.push(code) });
    client.start();
    const socket = last();
    client.stop();
    socket.drop(1000);
    expect(closes).toEqual([]);
  });
});
