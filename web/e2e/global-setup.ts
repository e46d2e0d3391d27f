/** Before a browser-test run: start the screenshots afresh, so every one left is of this run. */
import { rmSync } from "node:fs";
import { join } from "node:path";

import { ARTIFACTS } from "./server";

export default function setup(): void {
  rmSync(join(ARTIFACTS, "screenshots"), { recursive: true, force: true });
}
