import { QueryClient, QueryObserver } from "@tanstack/react-query";
import { afterEach, describe, expect, it } from "vitest";

import { reload } from "./reload";

/** A server that reads its state when asked and answers 20 ms later with what it read then. */
function server() {
  const api = {
    state: "before",
    reads: 0,
    read: () => {
      api.reads += 1;
      const seen = api.state;
      return new Promise<string>((done) => setTimeout(() => { done(seen); }, 20));
    },
  };
  return api;
}

const settle = () => new Promise((r) => setTimeout(r, 60));

describe("reload", () => {
  const queries = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const stops: (() => void)[] = [];
  afterEach(() => {
    for (const stop of stops.splice(0)) stop();
    queries.clear();
  });

  function watch(key: string, queryFn: () => Promise<string>) {
    const observer = new QueryObserver(queries, { queryKey: [key], queryFn });
    stops.push(observer.subscribe(() => undefined)); // mounted: its query is active
    return () => observer.getCurrentResult().data;
  }

  it("does not keep a first load that was read before the change", async () => {
    const api = server();
    const data = watch("first", api.read);
    expect(api.reads).toBe(1); // the first load is in flight, read before the change
    api.state = "after";
    await reload(queries, ["first"]);
    expect(data()).toBe("after");
    expect(api.reads).toBe(2);
  });

  it("is needed: a plain invalidation during the first load keeps the stale answer", async () => {
    const api = server();
    const data = watch("plain", api.read);
    api.state = "after";
    await queries.invalidateQueries({ queryKey: ["plain"] });
    await settle();
    expect(data()).toBe("before");
    expect(api.reads).toBe(1);
  });

  it("loads again a query that already holds data", async () => {
    const api = server();
    const data = watch("loaded", api.read);
    await settle();
    expect(data()).toBe("before");
    api.state = "after";
    await reload(queries, ["loaded"]);
    expect(data()).toBe("after");
  });

  it("leaves other queries alone, and without a key reloads them all", async () => {
    const api = server();
    const mine = watch("mine", api.read);
    const other = watch("other", api.read);
    await settle();
    api.state = "after";
    await reload(queries, ["mine"]);
    expect([mine(), other()]).toEqual(["after", "before"]);
    api.state = "later";
    await reload(queries);
    expect([mine(), other()]).toEqual(["later", "later"]);
  });
});
