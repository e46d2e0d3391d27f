import { defineConfig } from "vitest/config";

// Browser tests: one real `healthflow serve` and one headless Chromium per file, files in series.
export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.ts"],
    globalSetup: ["e2e/global-setup.ts"],
    environment: "node",
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
