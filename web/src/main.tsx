import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode, useCallback, useState } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter } from "react-router";

import { AccessProvider } from "./access/AccessProvider";
import { AlertsProvider } from "./alerts/AlertsProvider";
import { accessToken, setAccessToken, wardLimit } from "./api/auth";
import { ApiError } from "./api/client";
import { CALLBACK_PATH } from "./api/oidc";
import { App } from "./App";
import { BoardProvider } from "./board/BoardProvider";
import { LiveProvider } from "./live/LiveProvider";
import { baseTopics } from "./live/topics";
import { SessionGuard } from "./SessionGuard";
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

/**
 * The dashboard once signed in, offering only what the server allows this user
 * (`access/access.ts`); the live socket opens only with a token to present.
 */
function Root() {
  // the OIDC callback page finishes a sign-in even in a tab that holds a token already
  const [signedIn, setSignedIn] = useState(
    accessToken() !== null && window.location.pathname !== CALLBACK_PATH,
  );
  // why the last session ended (expired, refused), shown on the sign-in page
  const [notice, setNotice] = useState<string | null>(null);
  const done = useCallback(() => {
    setNotice(null);
    setSignedIn(true);
  }, []);
  const ended = useCallback((message: string) => {
    setAccessToken(null);
    queries.clear(); // nothing loaded with the old sign-in outlives it
    setNotice(message);
    setSignedIn(false);
  }, []);
  if (!signedIn) {
    return (
      <QueryClientProvider client={queries}>
        <SignIn onSignedIn={done} notice={notice} />
      </QueryClientProvider>
    );
  }
  return (
    <QueryClientProvider client={queries}>
      <AccessProvider onEnded={ended}>
        {(access) => (
          // a role the server refuses the socket (an analyst) never opens it
          <LiveProvider topics={baseTopics(wardLimit())} connect={access.may("live")}>
            <SessionGuard onEnded={ended} />
            <BoardProvider>
              <AlertsProvider>
                <BrowserRouter>
                  <App />
                </BrowserRouter>
              </AlertsProvider>
            </BoardProvider>
          </LiveProvider>
        )}
      </AccessProvider>
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
