import { describe, expect, it } from "vitest";

import { baseTopics, wardTopic } from "./topics";

describe("ward topics", () => {
  // the same table as tests/unit/test_realtime_topics.py: both sides must name a ward alike
  it.each([
    ["ICU", "ward:ICU"],
    ["B 2", "ward:B 2"],
    ["A&E", "ward:A%26E"],
    ["50%", "ward:50%25"],
    ["St Mary's", "ward:St Mary%27s"],
    ["Kinder/Jugend", "ward:Kinder%2FJugend"],
    ["Åsa,2", "ward:%C3%85sa%2C2"],
    ["病棟", "ward:%E7%97%85%E6%A3%9F"],
    [" ICU", "ward: ICU"],
  ])("names ward %j as %j", (ward, topic) => {
    expect(wardTopic(ward)).toBe(topic);
  });

  it("gives every ward the patients API accepts a printable topic without commas", () => {
    for (const ward of ["A&E", "x".repeat(50), "Ward 7 (east) – step-down", "ÄÖÜ/ß", "\tICU", "a\nb"]) {
      const topic = wardTopic(ward) ?? "";
      expect(topic).toMatch(/^ward:[\x20-\x7e]+$/);
      expect(topic).not.toContain(",");
    }
  });

  it("gives no topic to names no ward can have", () => {
    for (const ward of ["", "   ", "x".repeat(65)]) expect(wardTopic(ward)).toBeNull();
    // 64 characters that are 2 UTF-16 units each still fit (the server counts characters)
    expect(wardTopic("😀".repeat(64))).not.toBeNull();
  });

  it("asks for all patients and alerts, or only the ward a nurse is limited to", () => {
    expect(baseTopics(null)).toEqual(["patients", "alerts"]);
    expect(baseTopics("A&E")).toEqual(["ward:A%26E"]);
  });
});
