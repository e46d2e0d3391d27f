// Fails when the committed API types differ from those generated from the committed schema.
import { readFileSync, rmSync } from "node:fs";

const [committed, fresh] = process.argv.slice(2);
const same = readFileSync(committed, "utf8") === readFileSync(fresh, "utf8");
rmSync(fresh);
if (!same) {
  console.error(`${committed} is stale: run \`npm run api:generate\` and commit it.`);
  process.exit(1);
}
console.log(`${committed} matches openapi.json`);
