import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode, useCallback, useState } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter } from "react-router";

import { AlertsProvider } from "./alerts/AlertsProvider";
import { accessToken } from "./api/auth";
import { ApiError } from "./api/client";
import { CALLBACK_PATH } from "./api/oidc";
import { App } from "./App";
import { BoardProvider } from "./board/BoardProvider";
import { LiveProvider } from "./live/LiveProvider";
import { SignIn } from "./SignIn";
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

/** The dashboard once signed in; the live socket opens only with a token to present. */
function Root() {
  // the OIDC callback page finishes a sign-in even in a tab that holds a token already
  const [signedIn, setSignedIn] = useState(
    accessToken() !== null && window.location.pathname !== CALLBACK_PATH,
  );
  const done = useCallback(() => {
    setSignedIn(true);
  }, []);
  if (!signedIn) {
    return (
      <QueryClientProvider client={queries}>
        <SignIn onSignedIn={done} />
      </QueryClientProvider>
    );
  }
  return (
    <QueryClientProvider client={queries}>
      <LiveProvider>
        <BoardProvider>
          <AlertsProvider>
            <BrowserRouter>
              <App />
            </BrowserRouter>
          </AlertsProvider>
        </BoardProvider>
      </LiveProvider>
    </QueryClientProvider>
  );
}

const root = document.getElementById("root");
if (!root) throw new Error("index.html has no #root");
createRoot(root).render(
  <StrictMode>
    <Root />
  </StrictMode>,
);
