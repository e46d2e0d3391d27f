import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter } from "react-router";

import { ApiError } from "./api/client";
import { App } from "./App";
import { BoardProvider } from "./board/BoardProvider";
import { LiveProvider } from "./live/LiveProvider";
import "./styles.css";

// Live messages keep data fresh; refetching on focus would only add load.
const queries = new QueryClient({
  defaultOptions: {
    queries: {
      refetchOnWindowFocus: false,
      // a 4xx will not change by asking again; a network error or 5xx may
      retry: (failures, error) =>
        failures < 2 && !(error instanceof ApiError && error.problem.status < 500),
    },
  },
});

const root = document.getElementById("root");
if (!root) throw new Error("index.html has no #root");
createRoot(root).render(
  <StrictMode>
    <QueryClientProvider client={queries}>
      <LiveProvider>
        <BoardProvider>
          <BrowserRouter>
            <App />
          </BrowserRouter>
        </BoardProvider>
      </LiveProvider>
    </QueryClientProvider>
  </StrictMode>,
);
