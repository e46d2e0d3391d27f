import { afterEach, describe, expect, it, vi } from "vitest";

import {
  currentUser,
  reportUnauthorized,
  setAccessToken,
  tokenClaims,
  tokenExpiry,
  wardLimit,
  whenUnauthorized,
} from "./auth";

/** An unsigned JWT with these claims (the dashboard never checks signatures). */
function jwt(claims: Record<string, unknown>): string {
  const bytes = new TextEncoder().encode(JSON.stringify(claims));
  const payload = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `e30.${payload}.sig`;
}

afterEach(() => {
  setAccessToken(null);
});

describe("the token's claims", () => {
  it("are read from the payload, UTF-8 included", () => {
    const claims = tokenClaims(jwt({ sub: "n", ward: "Åsa & Co", exp: 1_800_000_000 }));
    expect(claims).toMatchObject({ sub: "n", ward: "Åsa & Co" });
    expect(tokenExpiry(claims)).toBe(1_800_000_000_000);
  });

  it("are empty for what is not a JWT", () => {
    for (const token of [null, "", "abc", "a.!!!.c", `a.${btoa("[1]")}.c`]) {
      expect(tokenClaims(token)).toEqual({});
    }
    expect(tokenExpiry({})).toBeNull();
  });

  it("name the signed-in user", () => {
    setAccessToken(jwt({ sub: "n-1", preferred_username: "nina" }));
    expect(currentUser()).toBe("nina");
  });
});

describe("the ward limit", () => {
  it.each([
    [{ roles: ["nurse"], ward: "A&E" }, "A&E"],
    [{ roles: "nurse", ward: "ICU" }, "ICU"],
    [{ roles: ["nurse"] }, null],
    [{ roles: ["nurse"], ward: "" }, null],
    [{ roles: ["admin"], ward: "ICU" }, null],
    [{ roles: ["clinician", "nurse"], ward: "ICU" }, null],
    // roles kept under another claim: the ward claim is the limit (never asks for too much)
    [{ realm_access: { roles: ["nurse"] }, ward: "ICU" }, "ICU"],
  ])("of %j is %j", (claims, ward) => {
    expect(wardLimit(claims)).toBe(ward);
  });
});

describe("a 401", () => {
  it("reaches the session watch when it answered the token held now", () => {
    const token = jwt({ sub: "a" });
    setAccessToken(token);
    const heard = vi.fn();
    const release = whenUnauthorized(heard);
    reportUnauthorized(`Bearer ${token}`);
    expect(heard).toHaveBeenCalledTimes(1);
    release();
  });

  it("is ignored when the request carried a token renewed since", () => {
    setAccessToken(jwt({ sub: "new" }));
    const heard = vi.fn();
    const release = whenUnauthorized(heard);
    reportUnauthorized(`Bearer ${jwt({ sub: "old" })}`);
    expect(heard).not.toHaveBeenCalled();
    release();
  });

  it("that came before anyone listened is handed to the first listener", () => {
    const token = jwt({ sub: "a" });
    setAccessToken(token);
    reportUnauthorized(`Bearer ${token}`);
    const heard = vi.fn();
    const release = whenUnauthorized(heard);
    expect(heard).toHaveBeenCalledTimes(1);
    release();
    const later = vi.fn();
    whenUnauthorized(later)();
    expect(later).not.toHaveBeenCalled();
  });
});
