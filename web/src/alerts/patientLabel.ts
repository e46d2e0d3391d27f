import type { BoardEntry } from "../board/boardState";

/** "Lovelace, Ada" once the board knows the patient; until then the ward says where to look. */
export function patientName(entry: BoardEntry | undefined): string {
  if (entry?.person) return `${entry.person.family_name}, ${entry.person.given_name}`;
  return "Patient (loading name…)";
}

/** "ICU, bed 3" */
export function place(ward: string, entry: BoardEntry | undefined): string {
  return entry?.bed ? `${ward}, bed ${entry.bed}` : ward;
}
