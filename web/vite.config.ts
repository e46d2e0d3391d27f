import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// `npm run dev` proxies the server's paths to a `healthflow serve` on port 8000.
const backend = process.env.HEALTHFLOW_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      "/api": backend,
      "/health": backend,
      "/ws": { target: backend, ws: true },
    },
  },
  build: { sourcemap: true, chunkSizeWarningLimit: 1024 },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
