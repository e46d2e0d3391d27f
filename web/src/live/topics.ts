/**
 * Live-push topic names, as the server writes them (realtime/topics.py, docs/realtime.md).
 * Any ward the patients API accepts has a topic: the name as it is when it has only letters,
 * digits, space, `_`, `.` and `-`; otherwise every other character is written as its UTF-8
 * bytes in `%XX` (upper-case hex), so `A&E` is `ward:A%26E`.
 */
export const PATIENTS = "patients";
export const ALERTS = "alerts";
export const METRICS = "metrics";
export const MAX_WARD_NAME = 64;

const PLAIN = /^[A-Za-z0-9 _.-]$/;
const utf8 = new TextEncoder();

/** The one topic of a ward, or null for a name no ward can have (blank, too long). */
export function wardTopic(ward: string): string | null {
  // the server counts characters (code points), as Python's len() does
  if (ward.trim() === "" || Array.from(ward).length > MAX_WARD_NAME) return null;
  let topic = "ward:";
  for (const char of ward) {
    if (PLAIN.test(char)) {
      topic += char;
      continue;
    }
    for (const byte of utf8.encode(char)) {
      topic += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    }
  }
  return topic;
}

/**
 * The topics every screen needs, whoever is signed in: all patient changes and alerts; or, for
 * a nurse limited to one ward, that ward's topic, which carries its patient changes, alerts and
 * NEWS2 (the server refuses `patients` and `alerts` to her).
 */
export function baseTopics(ward: string | null): string[] {
  if (ward === null) return [PATIENTS, ALERTS];
  const topic = wardTopic(ward);
  return topic === null ? [] : [topic];
}
