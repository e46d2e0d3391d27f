/**
 * Keeps a signed-in session honest: when the server stops accepting the token (an API answer of
 * 401, a live socket refused, or the token's lifetime running out) the dashboard first tries a
 * silent renewal where the sign-in offers one (OIDC with a refresh token), and otherwise ends the
 * session with a message, so the user is sent back to sign-in instead of left with a board that
 * silently stopped working.
 *
 * Pure logic with everything it touches passed in, so the tests drive it with fakes and fake
 * timers; `main.tsx` wires the real ones.
 */

/** What the server makes of the token now (GET /api/auth/session). */
export type TokenCheck = "valid" | "refused" | "unknown";

export interface SessionOptions {
  /** Ask the server whether the current token is still accepted. */
  check: () => Promise<TokenCheck>;
  /** A new access token without the user's help, or null where the sign-in offers none. */
  renew: (() => Promise<string | null>) | null;
  /** The renewed token: store it (later requests and reconnects use it) and reload. */
  onRenewed: (token: string) => void;
  /** The session is over: forget the token, show sign-in with this message. */
  onEnded: (message: string) => void;
  /** The token's expiry (ms since the epoch) now, or null when it names none. */
  expiry: () => number | null;
  now?: () => number;
  /** How long after a check that found the token still valid to check again (clock skew,
   * the server's leeway). */
  recheckMs?: number;
  /** How long before expiry to renew, where renewal is possible. */
  renewAheadMs?: number;
  /** The fewest milliseconds between two checks caused by refused live sockets. */
  liveCheckGapMs?: number;
}

export const EXPIRED = "Your sign-in has expired. Sign in again to carry on where you were.";
export const REFUSED =
  "The server no longer accepts your sign-in (it expired or was withdrawn). Sign in again to carry on where you were.";

// setTimeout takes at most 2^31-1 ms; a longer wait is taken in steps
const MAX_TIMER_MS = 2_147_483_647;

export class SessionWatch {
  private ended = false;
  private renewing: Promise<boolean> | null = null;
  private checking: Promise<void> | null = null;
  private lastLiveCheck = -Infinity;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Counts schedules: a wait begun for an older token stops when a renewal rescheduled. */
  private scheduled = 0;
  private readonly now: () => number;

  constructor(private readonly options: SessionOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Start watching the token's lifetime. */
  start(): void {
    this.schedule();
  }

  /** Stop all timers (the session view is gone). */
  stop(): void {
    this.ended = true;
    this.clearTimer();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** An API request was answered 401: renew if possible, else end the session. */
  unauthorized(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return this.renewOrEnd();
  }

  /**
   * The live socket closed before it opened. Browsers do not tell a page why a handshake was
   * refused, so the server is asked whether the token is still good (at most once per gap);
   * a close with an auth code (4401, or 4001 from the access hook) needs no asking.
   */
  liveRefused(code: number): void {
    if (this.ended) return;
    if (code === 4401 || code === 4001) {
      void this.unauthorized();
      return;
    }
    const gap = this.options.liveCheckGapMs ?? 5_000;
    if (this.checking !== null || this.now() - this.lastLiveCheck < gap) return;
    this.lastLiveCheck = this.now();
    void this.verify();
  }

  /** Ask the server about the token; a refusal ends (or renews) the session. */
  private verify(): Promise<void> {
    this.checking ??= (async () => {
      let verdict: TokenCheck;
      try {
        verdict = await this.options.check();
      } catch {
        verdict = "unknown";
      }
      this.checking = null;
      if (this.ended) return;
      if (verdict === "refused") await this.renewOrEnd();
    })();
    return this.checking;
  }

  private renewOrEnd(): Promise<void> {
    return this.renew().then((renewed) => {
      if (!renewed && !this.ended) this.end();
    });
  }

  /** One renewal at a time, however many requests failed meanwhile; true when it worked. */
  private renew(): Promise<boolean> {
    const renew = this.options.renew;
    if (renew === null) return Promise.resolve(false);
    this.renewing ??= (async () => {
      try {
        const token = await renew();
        if (token === null || this.ended) return false;
        this.options.onRenewed(token);
        this.schedule();
        return true;
      } catch {
        return false;
      } finally {
        this.renewing = null;
      }
    })();
    return this.renewing;
  }

  private end(): void {
    const expiry = this.options.expiry();
    this.ended = true;
    this.clearTimer();
    this.options.onEnded(expiry !== null && expiry <= this.now() ? EXPIRED : REFUSED);
  }

  /** Renew shortly before expiry where possible; check with the server once it has passed. */
  private schedule(): void {
    this.clearTimer();
    this.scheduled += 1;
    if (this.ended) return;
    const expiry = this.options.expiry();
    if (expiry === null) return;
    // renew ahead of expiry, but never before half the token's remaining life: a token that
    // lives a minute or less would otherwise be renewed over and over at once
    const left = Math.max(0, expiry - this.now());
    const ahead = this.options.renew !== null ? Math.min(this.options.renewAheadMs ?? 60_000, left / 2) : 0;
    this.wait(expiry - ahead, expiry, this.scheduled);
  }

  private wait(until: number, expiry: number, generation: number): void {
    const ms = until - this.now();
    this.timer = setTimeout(
      () => {
        this.timer = null;
        if (ms > MAX_TIMER_MS) this.wait(until, expiry, generation);
        else void this.onDue(expiry, generation);
      },
      Math.min(Math.max(ms, 0), MAX_TIMER_MS),
    );
  }

  private async onDue(expiry: number, generation: number): Promise<void> {
    const current = () => !this.ended && generation === this.scheduled;
    if (!current()) return;
    if (this.options.renew !== null && (await this.renew())) return; // rescheduled for the new token
    if (!current()) return;
    if (this.now() < expiry) {
      // no renewal ahead of time: the token is still good until it expires
      this.wait(expiry, expiry, generation);
      return;
    }
    await this.verify();
    if (!current()) return;
    // still accepted (a clock ahead of the server's, or its leeway): ask again a little later
    this.wait(this.now() + (this.options.recheckMs ?? 30_000), expiry, generation);
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
