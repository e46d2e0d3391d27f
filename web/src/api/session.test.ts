import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { EXPIRED, REFUSED, SessionWatch, type SessionOptions, type TokenCheck } from "./session";

const T0 = Date.parse("2026-11-25T09:00:00Z");

function harness(overrides: Partial<SessionOptions> & { verdicts?: TokenCheck[] } = {}) {
  const ended: string[] = [];
  const renewed: string[] = [];
  const verdicts = overrides.verdicts ?? [];
  let checks = 0;
  let expiry: number | null = T0 + 10 * 60_000;
  const watch = new SessionWatch({
    check: () => {
      checks += 1;
      return Promise.resolve(verdicts.shift() ?? "valid");
    },
    renew: null,
    onRenewed: (token) => {
      renewed.push(token);
      expiry = Date.now() + 10 * 60_000; // the new token's lifetime
    },
    onEnded: (message) => ended.push(message),
    expiry: () => expiry,
    recheckMs: 30_000,
    renewAheadMs: 60_000,
    liveCheckGapMs: 5_000,
    ...overrides,
  });
  return {
    watch,
    ended,
    renewed,
    checks: () => checks,
    setExpiry: (value: number | null) => {
      expiry = value;
    },
  };
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(T0);
});

afterEach(() => {
  vi.useRealTimers();
});

describe("an API answer of 401", () => {
  it("ends the session, saying the server no longer accepts the sign-in", async () => {
    const { watch, ended } = harness();
    await watch.unauthorized();
    expect(ended).toEqual([REFUSED]);
    expect(watch.isEnded).toBe(true);
  });

  it("says the sign-in expired when its lifetime is over", async () => {
    const { watch, ended, setExpiry } = harness();
    setExpiry(T0 - 1000);
    await watch.unauthorized();
    expect(ended).toEqual([EXPIRED]);
  });

  it("ends the session once however many requests failed together", async () => {
    const { watch, ended } = harness();
    await Promise.all([watch.unauthorized(), watch.unauthorized(), watch.unauthorized()]);
    await watch.unauthorized();
    expect(ended).toEqual([REFUSED]);
  });

  it("renews silently once for many failed requests and stays signed in", async () => {
    const renew = vi.fn(() => Promise.resolve("new-token"));
    const { watch, ended, renewed } = harness({ renew });
    await Promise.all([watch.unauthorized(), watch.unauthorized()]);
    expect(renew).toHaveBeenCalledTimes(1);
    expect(renewed).toEqual(["new-token"]);
    expect(ended).toEqual([]);
  });

  it.each([
    ["gives nothing", () => Promise.resolve(null)],
    ["fails", () => Promise.reject(new Error("login_required"))],
  ])("ends the session when renewal %s", async (_, renew) => {
    const { watch, ended, renewed } = harness({ renew });
    await watch.unauthorized();
    expect(renewed).toEqual([]);
    expect(ended).toEqual([REFUSED]);
  });
});

describe("a live socket refused", () => {
  it("with an auth close code ends the session without asking", async () => {
    for (const code of [4401, 4001]) {
      const { watch, ended, checks } = harness();
      watch.liveRefused(code);
      await vi.runAllTimersAsync();
      expect(ended).toEqual([REFUSED]);
      expect(checks()).toBe(0);
    }
  });

  it("before it opened asks the server, and ends the session only on its refusal", async () => {
    const { watch, ended, checks } = harness({ verdicts: ["valid", "unknown", "refused"] });
    watch.liveRefused(1006); // e.g. the server restarting: the token is fine
    await vi.advanceTimersByTimeAsync(0);
    expect(ended).toEqual([]);
    await vi.advanceTimersByTimeAsync(5_000);
    watch.liveRefused(1006); // the server not answering: nothing known
    await vi.advanceTimersByTimeAsync(5_000);
    expect(ended).toEqual([]);
    watch.liveRefused(1006);
    await vi.advanceTimersByTimeAsync(0);
    expect(checks()).toBe(3);
    expect(ended).toEqual([REFUSED]);
  });

  it("asks at most once per gap however often the socket fails", async () => {
    const { watch, checks } = harness();
    for (let i = 0; i < 5; i++) {
      watch.liveRefused(1006);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(checks()).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    watch.liveRefused(1006);
    expect(checks()).toBe(2);
  });

  it("counts a failed check as nothing known", async () => {
    const { watch, ended } = harness({ check: () => Promise.reject(new Error("offline")) });
    watch.liveRefused(1006);
    await vi.runAllTimersAsync();
    expect(ended).toEqual([]);
  });
});

describe("the token's lifetime", () => {
  it("is checked with the server when it runs out, and the session ends on refusal", async () => {
    const { watch, ended, checks } = harness({ verdicts: ["refused"] });
    watch.start();
    await vi.advanceTimersByTimeAsync(10 * 60_000 - 1);
    expect(checks()).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(checks()).toBe(1);
    expect(ended).toEqual([EXPIRED]);
  });

  it("is checked again while the server still accepts the token (clock skew, leeway)", async () => {
    const { watch, ended, checks } = harness({ verdicts: ["valid", "valid", "refused"] });
    watch.start();
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(checks()).toBe(1);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(checks()).toBe(2);
    expect(ended).toEqual([]);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(ended).toEqual([EXPIRED]);
  });

  it("is renewed ahead of expiry where renewal is possible, and watched anew", async () => {
    const renew = vi.fn(() => Promise.resolve(`token-${String(renew.mock.calls.length)}`));
    const { watch, ended, renewed, checks } = harness({ renew });
    watch.start();
    await vi.advanceTimersByTimeAsync(9 * 60_000);
    expect(renewed).toEqual(["token-1"]);
    await vi.advanceTimersByTimeAsync(9 * 60_000);
    expect(renewed).toEqual(["token-1", "token-2"]);
    expect(checks()).toBe(0);
    expect(ended).toEqual([]);
  });

  it("renews a token shorter-lived than the lead time at half its life, not at once", async () => {
    const renew = vi.fn(() => Promise.resolve("next"));
    const { watch, renewed, setExpiry } = harness({
      renew,
      onRenewed: (token) => {
        renewed.push(token);
        setExpiry(Date.now() + 20_000);
      },
    });
    setExpiry(T0 + 20_000);
    watch.start();
    await vi.advanceTimersByTimeAsync(9_999);
    expect(renewed).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(renewed).toEqual(["next"]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(renewed).toEqual(["next", "next"]);
  });

  it("ends with the expiry message when renewal fails and the server refuses", async () => {
    const renew = vi.fn(() => Promise.resolve(null));
    const { watch, ended } = harness({ renew, verdicts: ["refused"] });
    watch.start();
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(renew.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(ended).toEqual([EXPIRED]);
  });

  it("is not watched for a token without an expiry", async () => {
    const { watch, checks, setExpiry } = harness();
    setExpiry(null);
    watch.start();
    await vi.advanceTimersByTimeAsync(24 * 3_600_000);
    expect(checks()).toBe(0);
  });

  it("stops being watched when the session view goes", async () => {
    const { watch, ended, checks } = harness({ verdicts: ["refused"] });
    watch.start();
    watch.stop();
    await vi.advanceTimersByTimeAsync(60 * 60_000);
    await watch.unauthorized();
    watch.liveRefused(4401);
    expect(checks()).toBe(0);
    expect(ended).toEqual([]);
  });
});
