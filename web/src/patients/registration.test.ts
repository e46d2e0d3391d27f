import { describe, expect, it } from "vitest";

import { EMPTY, toBody } from "./registration";

describe("toBody", () => {
  it("sends every typed field as typed", () => {
    const fields = {
      given_name: " Ada ",
      family_name: "Lovelace",
      birth_date: "1980-12-10",
      sex: "female",
      ward: "ICU",
      bed: "3",
      mrn: "MRN-1",
    };
    expect(toBody(fields)).toEqual(fields);
  });

  it("leaves out empty optional and unchosen fields, keeps empty required text", () => {
    expect(toBody(EMPTY)).toEqual({ given_name: "", family_name: "", ward: "" });
  });
});
