import { describe, expect, it } from "vitest";

// README's permission table: generated from security/rbac.py and checked against it by
// tests/unit/test_permission_table.py, so these are the lists the server really sends
import readme from "../../../README.md?raw";
import { accessFrom, FEATURES, type Feature } from "./access";

/** What GET /api/auth/session lists for a role: the table's rows that name the role. */
function sessionOf(role: string): { roles: string[]; permissions: string[] } {
  const permissions: string[] = [];
  for (const line of readme.split("\n")) {
    const row = /^\| `(\w+ \/[^`]*)` \| ([^|]+) \|/.exec(line);
    if (row?.[1] && row[2]?.split(", ").map((r) => r.trim()).includes(role)) permissions.push(row[1]);
  }
  return { roles: [role], permissions };
}

const ALL = Object.keys(FEATURES) as Feature[];

function offered(role: string): Feature[] {
  const access = accessFrom(sessionOf(role));
  return ALL.filter((f) => access.may(f));
}

describe("what each role is offered", () => {
  it("reads the permission table (a parse that finds nothing would pass everything below)", () => {
    expect(sessionOf("nurse").permissions).toContain("PUT /api/patients/{patient_id}/status");
    expect(sessionOf("admin").permissions.length).toBeGreaterThan(20);
  });

  it("offers the admin and the clinician every feature", () => {
    expect(offered("admin")).toEqual(ALL);
    expect(offered("clinician")).toEqual(ALL);
  });

  it("offers a nurse everything but registering patients", () => {
    expect(offered("nurse")).toEqual(ALL.filter((f) => f !== "register"));
  });

  it("offers an analyst the analytics dashboard only, without the live socket", () => {
    expect(offered("analyst")).toEqual(["analytics"]);
  });

  it("offers a device or an unknown role nothing", () => {
    expect(offered("device")).toEqual([]);
    expect(offered("visitor")).toEqual([]);
  });
});

describe("views and the landing page", () => {
  it("lands the clinician on the board with every view in the navigation", () => {
    const access = accessFrom(sessionOf("clinician"));
    expect(access.home).toBe("/");
    expect(access.views.map((v) => v.label)).toEqual([
      "Ward board",
      "Register",
      "Alerts",
      "Analytics",
      "Operations",
    ]);
  });

  it("leaves Register out of the nurse's navigation", () => {
    const access = accessFrom(sessionOf("nurse"));
    expect(access.home).toBe("/");
    expect(access.views.map((v) => v.path)).toEqual(["/", "/alerts", "/analytics", "/operations"]);
  });

  it("lands the analyst on analytics, the only view", () => {
    const access = accessFrom(sessionOf("analyst"));
    expect(access.home).toBe("/analytics");
    expect(access.views.map((v) => v.path)).toEqual(["/analytics"]);
  });

  it("has no landing page for a session that allows no view", () => {
    expect(accessFrom({ roles: [], permissions: ["GET /api/auth/session"] }).home).toBeNull();
  });
});

describe("a feature needs every operation it uses", () => {
  const board = ["GET /api/patients", "GET /api/news2", "GET /api/patients/{patient_id}"];

  it("is offered with all of them", () => {
    expect(accessFrom({ roles: [], permissions: board }).may("board")).toBe(true);
  });

  it.each(board)("is not offered without %s", (missing) => {
    const permissions = board.filter((op) => op !== missing);
    expect(accessFrom({ roles: [], permissions }).may("board")).toBe(false);
  });

  it("ignores operations it does not know (a newer server)", () => {
    const access = accessFrom({ roles: ["x"], permissions: ["GET /api/analytics/dashboard", "GET /api/new"] });
    expect(access.views.map((v) => v.path)).toEqual(["/analytics"]);
  });
});
