import type { PatientIn } from "../api/types";

/** The registration form's fields, as typed. */
export type Fields = Record<
  "given_name" | "family_name" | "birth_date" | "sex" | "ward" | "bed" | "mrn",
  string
>;

export const EMPTY: Fields = {
  given_name: "",
  family_name: "",
  birth_date: "",
  sex: "",
  ward: "",
  bed: "",
  mrn: "",
};

const LEFT_OUT_WHEN_EMPTY = ["bed", "mrn", "sex", "birth_date"];

/**
 * The body sent for what was typed, unjudged: empty optional fields (bed, MRN) are left out so the
 * API applies its defaults; an unchosen sex or date is left out so the API says "Field required";
 * empty names and ward are sent so the API names the rule they break.
 */
export function toBody(fields: Fields): PatientIn {
  const body: Record<string, string> = {};
  for (const [name, value] of Object.entries(fields)) {
    if (value !== "" || !LEFT_OUT_WHEN_EMPTY.includes(name)) body[name] = value;
  }
  // the API, not this cast, validates the body: that is the point of sending it unjudged
  return body as unknown as PatientIn;
}
