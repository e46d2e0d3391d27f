import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useReducer,
  useRef,
  useState,
  type ReactNode,
} from "react";

import { useAccess } from "../access/AccessProvider";
import { wardLimit } from "../api/auth";
import { ApiError, getPatient, listAllNews2, listAllPatients } from "../api/client";
import { useLive, useLiveTopics } from "../live/LiveProvider";
import {
  type BoardState,
  boardReducer,
  initialBoard,
  missingPeople,
  wardNames,
  wardTopics,
} from "./boardState";

interface BoardContextValue {
  state: BoardState;
  error: string | null;
  reload: () => void;
}

const BoardContext = createContext<BoardContextValue | null>(null);

/**
 * Keeps every patient loaded for the whole session: loaded once over HTTP, then kept current by
 * live messages (names fetched by id, since live messages are de-identified), reloaded on resync.
 */
export function BoardProvider({ children }: { children: ReactNode }) {
  // a role without the board (an analyst) loads nothing: the server would refuse it
  const allowed = useAccess().may("board");
  const [state, dispatch] = useReducer(boardReducer, initialBoard);
  const [error, setError] = useState<string | null>(null);
  const generation = useRef(0);
  const loading = useRef(false);
  const again = useRef(false);
  const requested = useRef(new Set<string>());

  // read through a function: the compiler would otherwise assume the loop did not change it
  const reloadAsked = useCallback(() => again.current, []);
  const reload = useCallback(() => {
    if (!allowed) return;
    if (loading.current) {
      again.current = true; // one more reload after this one, however many resyncs came
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
          // a nurse limited to a ward sees that ward's board: the server refuses her the rest
          const ward = wardLimit();
          const [{ items, complete }, scores] = await Promise.all([
            listAllPatients(ward),
            listAllNews2(ward),
          ]);
          dispatch({ kind: "loaded", patients: items, complete, generation: started });
          dispatch({ kind: "news2", items: scores });
          setError(null);
        } catch (e: unknown) {
          setError(e instanceof ApiError ? e.message : "The patient list could not be loaded.");
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
  // each ward's topic carries its patients' VitalsUpdated: the NEWS2 column stays live
  useLiveTopics(useMemo(() => wardTopics(wardNames(state)), [state]));

  useEffect(() => {
    for (const id of missingPeople(state)) {
      if (requested.current.has(id)) continue;
      requested.current.add(id);
      getPatient(id)
        .then((patient) => {
          dispatch({ kind: "details", patient });
        })
        .catch(() => {
          // the next resync or live message for this patient asks again
          requested.current.delete(id);
        });
    }
  }, [state]);

  return <BoardContext.Provider value={{ state, error, reload }}>{children}</BoardContext.Provider>;
}

export function useBoard(): BoardContextValue {
  const context = useContext(BoardContext);
  if (context === null) throw new Error("useBoard needs a BoardProvider above it");
  return context;
}
