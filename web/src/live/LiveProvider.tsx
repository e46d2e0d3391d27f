import {
  createContext,
  useContext,
  useEffect,
  useRef,
  useState,
  type ReactNode,
} from "react";

import { liveUrl } from "../api/auth";
import { type ConnectionState, LiveClient, type LiveMessage } from "./socket";

export interface LiveListener {
  onMessage?: (message: LiveMessage) => void;
  onResync?: (reason: string) => void;
  /** Topics the server has just confirmed (newly, or again after a reconnect). */
  onTopicsReady?: (topics: string[]) => void;
  /** The socket closed (a reconnect follows): its code, and whether it had opened. */
  onClose?: (code: number, opened: boolean) => void;
}

interface LiveContextValue {
  state: ConnectionState;
  listen: (listener: LiveListener) => () => void;
  /** Want these topics while mounted; returns the release. Counted, so views can share one. */
  want: (topics: readonly string[]) => () => void;
  /** Tell every view to reload over HTTP (e.g. after a renewed sign-in). */
  resync: (reason: string) => void;
}

const LiveContext = createContext<LiveContextValue | null>(null);

/**
 * One live socket for the whole app; views listen to it and add topics through hooks. `topics`
 * are wanted by every screen: patient changes (the board's provider) and alerts (the banner),
 * as `patients` and `alerts`, or one ward's topic for a nurse limited to it (`live/topics.ts`).
 * Without `connect` (a role refused the socket) no socket opens and the state stays "stopped".
 */
export function LiveProvider({
  topics,
  connect = true,
  children,
}: {
  topics: readonly string[];
  /** False: no socket at all (a role the server refuses it); views' hooks then do nothing. */
  connect?: boolean;
  children: ReactNode;
}) {
  const [state, setState] = useState<ConnectionState>(connect ? "connecting" : "stopped");
  const listeners = useRef(new Set<LiveListener>());
  // the first render's topics for the whole session: whose they are does not change while signed in
  const wanted = useRef(new Map<string, number>(topics.map((t) => [t, 1])));
  const client = useRef<LiveClient | null>(null);
  const confirmed = useRef(new Set<string>());

  const [value] = useState<Omit<LiveContextValue, "state">>(() => {
    const apply = () => client.current?.setTopics([...wanted.current.keys()]);
    return {
      listen: (listener) => {
        listeners.current.add(listener);
        return () => {
          listeners.current.delete(listener);
        };
      },
      want: (topics) => {
        for (const t of topics) wanted.current.set(t, (wanted.current.get(t) ?? 0) + 1);
        apply();
        return () => {
          for (const t of topics) {
            const n = (wanted.current.get(t) ?? 0) - 1;
            if (n > 0) wanted.current.set(t, n);
            else {
              wanted.current.delete(t);
              confirmed.current.delete(t);
            }
          }
          apply();
        };
      },
      resync: (reason) => {
        for (const l of listeners.current) l.onResync?.(reason);
      },
    };
  });

  useEffect(() => {
    if (!connect) return;
    const live = new LiveClient({
      url: () => liveUrl(),
      topics: [...wanted.current.keys()],
      onMessage: (message) => {
        for (const l of listeners.current) l.onMessage?.(message);
      },
      onResync: (reason) => {
        for (const l of listeners.current) l.onResync?.(reason);
      },
      onSubscribed: (topics) => {
        const fresh = topics.filter((t) => !confirmed.current.has(t));
        confirmed.current = new Set(topics);
        if (fresh.length === 0) return;
        for (const l of listeners.current) l.onTopicsReady?.(fresh);
      },
      onClose: (code, opened) => {
        for (const l of listeners.current) l.onClose?.(code, opened);
      },
      onState: (next) => {
        // a new connection confirms its topics again; views reload what they keep current
        if (next !== "open") confirmed.current.clear();
        setState(next);
      },
    });
    client.current = live;
    live.start();
    return () => {
      live.stop();
      client.current = null;
    };
  }, [connect]);

  return <LiveContext.Provider value={{ ...value, state }}>{children}</LiveContext.Provider>;
}

function useLiveContext(): LiveContextValue {
  const context = useContext(LiveContext);
  if (context === null) throw new Error("useLive needs a LiveProvider above it");
  return context;
}

/** Call the listener's handlers for every live message, resync and confirmation while mounted. */
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
        onTopicsReady: (t) => latest.current.onTopicsReady?.(t),
        onClose: (code, opened) => latest.current.onClose?.(code, opened),
      }),
    [listen],
  );
}

/** Subscribe to these topics while mounted (and while the list stays the same). */
export function useLiveTopics(topics: readonly string[]): void {
  const { want } = useLiveContext();
  const key = JSON.stringify([...topics].sort());
  useEffect(() => want(JSON.parse(key) as string[]), [want, key]);
}

export function useConnectionState(): ConnectionState {
  return useLiveContext().state;
}

/** Ask every view to reload what it shows over HTTP. */
export function useResync(): (reason: string) => void {
  return useLiveContext().resync;
}
