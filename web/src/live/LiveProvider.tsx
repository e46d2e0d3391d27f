import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from "react";

import { liveUrl } from "../api/auth";
import { type ConnectionState, LiveClient, type LiveMessage } from "./socket";

export interface LiveListener {
  onMessage?: (message: LiveMessage) => void;
  onResync?: (reason: string) => void;
}

interface LiveContextValue {
  state: ConnectionState;
  listen: (listener: LiveListener) => () => void;
}

const LiveContext = createContext<LiveContextValue | null>(null);

// `metrics` and `alerts` join once their views exist; the legacy server ignores the list anyway.
const TOPICS = ["patients"];

/** One live socket for the whole app; views listen to it through `useLive`. */
export function LiveProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState<ConnectionState>("connecting");
  const listeners = useRef(new Set<LiveListener>());
  const [value] = useState<LiveContextValue>(() => ({
    state: "connecting",
    listen: (listener) => {
      listeners.current.add(listener);
      return () => {
        listeners.current.delete(listener);
      };
    },
  }));

  useEffect(() => {
    const client = new LiveClient({
      url: () => liveUrl(),
      topics: TOPICS,
      onMessage: (message) => {
        for (const l of listeners.current) l.onMessage?.(message);
      },
      onResync: (reason) => {
        for (const l of listeners.current) l.onResync?.(reason);
      },
      onState: setState,
    });
    client.start();
    return () => {
      client.stop();
    };
  }, []);

  return <LiveContext.Provider value={{ ...value, state }}>{children}</LiveContext.Provider>;
}

function useLiveContext(): LiveContextValue {
  const context = useContext(LiveContext);
  if (context === null) throw new Error("useLive needs a LiveProvider above it");
  return context;
}

/** Call the listener's handlers for every live message and resync while mounted. */
export function useLive(listener: LiveListener): void {
  const { listen } = useLiveContext();
  const latest = useRef(listener);
  useEffect(() => {
    latest.current = listener;
  });
  useEffect(
    () =>
      listen({
        onMessage: (m) => latest.current.onMessage?.(m),
        onResync: (r) => latest.current.onResync?.(r),
      }),
    [listen],
  );
}

export function useConnectionState(): ConnectionState {
  return useLiveContext().state;
}
