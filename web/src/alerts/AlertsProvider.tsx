import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useReducer,
  useRef,
  useState,
  type ReactNode,
} from "react";

import { useAccess } from "../access/AccessProvider";
import { currentUser, wardLimit } from "../api/auth";
import { acknowledgeAlert, ApiError, listAlerts } from "../api/client";
import type { Alert } from "../api/types";
import { useLive } from "../live/LiveProvider";
import { type AlertsState, alertsReducer, initialAlerts } from "./alertsState";

// Active alerts are few at any time; the history is the most recent ones.
const ACTIVE_LIMIT = 500;
const HISTORY_LIMIT = 100;

interface AlertsContextValue {
  state: AlertsState;
  error: string | null;
  acknowledge: (id: string) => Promise<Alert>;
}

const AlertsContext = createContext<AlertsContextValue | null>(null);

/** Loads active alerts and recent history once, keeps them live, reloads on resync. */
export function AlertsProvider({ children }: { children: ReactNode }) {
  // a role without the alerts (an analyst) loads none: the server would refuse them
  const allowed = useAccess().may("alerts");
  const [state, dispatch] = useReducer(alertsReducer, initialAlerts);
  const [error, setError] = useState<string | null>(null);
  const generation = useRef(0);
  const loading = useRef(false);
  const again = useRef(false);

  const reloadAsked = useCallback(() => again.current, []);
  const reload = useCallback(() => {
    if (!allowed) return;
    if (loading.current) {
      again.current = true;
      return;
    }
    loading.current = true;
    void (async () => {
      do {
        again.current = false;
        generation.current += 1;
        const started = generation.current;
        dispatch({ kind: "reloadStarted" });
        try {
          const ward = wardLimit();
          const lists = await Promise.all([
            listAlerts(ward, { status: "open", limit: ACTIVE_LIMIT }),
            listAlerts(ward, { status: "acknowledged", limit: ACTIVE_LIMIT }),
            listAlerts(ward, { status: "resolved", limit: HISTORY_LIMIT }),
          ]);
          dispatch({ kind: "loaded", alerts: lists.flat(), generation: started });
          setError(null);
        } catch (e: unknown) {
          setError(e instanceof ApiError ? e.message : "The alerts could not be loaded.");
        }
      } while (reloadAsked());
      loading.current = false;
    })();
  }, [allowed, reloadAsked]);

  useEffect(() => {
    reload();
  }, [reload]);

  useLive({
    onMessage: (message) => {
      dispatch({ kind: "live", message });
    },
    onResync: reload,
  });

  const acknowledge = useCallback(async (id: string) => {
    const alert = await acknowledgeAlert(id, currentUser());
    dispatch({ kind: "saved", alert });
    return alert;
  }, []);

  return (
    <AlertsContext.Provider value={{ state, error, acknowledge }}>{children}</AlertsContext.Provider>
  );
}

export function useAlerts(): AlertsContextValue {
  const context = useContext(AlertsContext);
  if (context === null) throw new Error("useAlerts needs an AlertsProvider above it");
  return context;
}
