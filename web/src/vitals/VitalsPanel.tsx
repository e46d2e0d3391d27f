import { useCallback, useEffect, useId, useReducer, useRef, useState } from "react";
import {
  CartesianGrid,
  Legend,
  Line,
  LineChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";

import { wardLimit } from "../api/auth";
import { ApiError, getNews2, getVitals } from "../api/client";
import type { News2 } from "../api/types";
import { dateTime } from "../format";
import { useLive, useLiveTopics } from "../live/LiveProvider";
import { wardTopic } from "../live/topics";
import { News2Badge } from "../news2";
import { useNow } from "../useNow";
import {
  breakdown,
  initialVitals,
  inWindow,
  type Point,
  RECENT,
  vitalsReducer,
  WINDOWS,
} from "./vitalsState";

// Okabe–Ito, as the analytics charts: colour-blind safe; every chart also states its latest value.
const BLUE = "#0072B2";
const ORANGE = "#D55E00";

interface ChartSpec {
  title: string;
  unit: string;
  lines: { key: string; name: string; colour: string }[];
  domain: [number | "auto", number | "auto"];
}

const CHARTS: ChartSpec[] = [
  { title: "Heart rate", unit: "/min", lines: [{ key: "heart_rate", name: "Heart rate", colour: BLUE }], domain: [30, "auto"] },
  { title: "SpO₂", unit: "%", lines: [{ key: "spo2", name: "SpO₂", colour: BLUE }], domain: [80, 100] },
  { title: "Respiration rate", unit: "/min", lines: [{ key: "resp_rate", name: "Respiration rate", colour: BLUE }], domain: [0, "auto"] },
  {
    title: "Blood pressure",
    unit: "mmHg",
    lines: [
      { key: "systolic_bp", name: "Systolic", colour: BLUE },
      { key: "diastolic_bp", name: "Diastolic", colour: ORANGE },
    ],
    domain: [40, "auto"],
  },
  { title: "Temperature", unit: "°C", lines: [{ key: "temperature", name: "Temperature", colour: BLUE }], domain: [34, 41] },
];

function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

/** Start, middle and end of the window, so the axis shows the whole period (and fits). */
function ticks(from: number, to: number): number[] {
  return [from, Math.round((from + to) / 2), to];
}

function latest(points: Point[], key: string): { value: number; t: number } | null {
  for (let i = points.length - 1; i >= 0; i--) {
    const value = points[i]?.values[key];
    if (typeof value === "number") return { value, t: points[i]?.t ?? 0 };
  }
  return null;
}

function VitalChart({ spec, points, from, to }: { spec: ChartSpec; points: Point[]; from: number; to: number }) {
  const data = points.map((p) => {
    const row: Record<string, number> = { t: p.t };
    for (const { key } of spec.lines) {
      const v = p.values[key];
      if (typeof v === "number") row[key] = v;
    }
    return row;
  });
  const summary = spec.lines
    .map(({ key, name }) => {
      const found = latest(points, key);
      return found ? `${spec.lines.length > 1 ? `${name} ` : ""}${String(found.value)} ${spec.unit}` : null;
    })
    .filter(Boolean)
    .join(", ");
  return (
    <figure className="chart vital-chart" data-vital={spec.lines[0]?.key}>
      <figcaption>
        {spec.title} <span className="hint">({spec.unit})</span>
        <span className="latest" data-testid={`latest-${spec.lines[0]?.key ?? ""}`}>
          {summary ? `Latest: ${summary}` : "No values in this period"}
        </span>
      </figcaption>
      <ResponsiveContainer width="100%" height={170}>
        <LineChart data={data} margin={{ top: 5, right: 10, bottom: 0, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" />
          <XAxis
            dataKey="t"
            type="number"
            scale="time"
            domain={[from, to]}
            ticks={ticks(from, to)}
            tickFormatter={clock}
            allowDataOverflow
          />
          <YAxis domain={spec.domain} width={40} allowDataOverflow={false} />
          <Tooltip labelFormatter={(t) => dateTime(new Date(Number(t)).toISOString())} />
          {spec.lines.length > 1 && <Legend />}
          {spec.lines.map(({ key, name, colour }) => (
            <Line
              key={key}
              dataKey={key}
              name={name}
              stroke={colour}
              dot={false}
              connectNulls
              isAnimationActive={false}
              strokeWidth={2}
            />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </figure>
  );
}

/** Vitals charts for the last hour or day and the NEWS2 breakdown, kept live over `patient:{id}`. */
export function VitalsPanel({ patientId }: { patientId: string }) {
  const [windowIndex, setWindowIndex] = useState(0);
  const win = WINDOWS[windowIndex] ?? WINDOWS[0];
  const [state, dispatch] = useReducer(vitalsReducer, undefined, () =>
    initialVitals(patientId, win?.everyS ?? 5),
  );
  const [error, setError] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const now = useNow(15_000);
  const selectId = useId();
  // the window whose load may still apply; set before the load effect below runs
  const current = useRef(win);
  useEffect(() => {
    current.current = win;
  });

  const load = useCallback(() => {
    const chosen = current.current;
    if (!chosen) return;
    const since = new Date(Date.now() - chosen.ms).toISOString();
    void (async () => {
      try {
        const [series, recent] = await Promise.all([
          getVitals(patientId, { since, limit: 1000, every: chosen.everyS }),
          getVitals(patientId, { limit: RECENT }),
        ]);
        // a window chosen meanwhile has its own load: this one is stale
        if (current.current !== chosen) return;
        dispatch({ kind: "series", readings: series, everyS: chosen.everyS });
        dispatch({ kind: "recent", readings: recent });
        // NEWS2 exists from the first reading on: asked only then, so no 404 is provoked
        if (recent.length > 0) dispatch({ kind: "news2", news2: await getNews2(patientId) });
        setError(null);
      } catch (e: unknown) {
        if (e instanceof ApiError && e.problem.type.endsWith("/no-assessment")) return;
        setError(e instanceof ApiError ? e.message : "The vital signs could not be loaded.");
      } finally {
        setLoaded(true);
      }
    })();
  }, [patientId]);

  useEffect(() => {
    load();
  }, [load, windowIndex]);
  // a nurse limited to a ward may not subscribe to one patient: her ward's topic, subscribed
  // for every screen already, carries this patient's readings too
  const ward = wardLimit();
  const topic = (ward !== null ? wardTopic(ward) : null) ?? `patient:${patientId}`;
  useLiveTopics([topic]);
  useLive({
    onMessage: (message) => {
      dispatch({ kind: "live", message });
    },
    onResync: load,
    onTopicsReady: (topics) => {
      if (topics.includes(topic)) load();
    },
  });

  const to = Math.max(now, state.series.at(-1)?.t ?? 0);
  const from = to - (win?.ms ?? 0);
  const shown = inWindow(state.series, to, win?.ms ?? 0);

  return (
    <section aria-labelledby="vitals-title" className="vitals">
      <div className="page-head">
        <h2 id="vitals-title">Vital signs</h2>
        <div>
          <label htmlFor={selectId}>Period </label>
          <select id={selectId} value={windowIndex} onChange={(e) => { setWindowIndex(Number(e.target.value)); }}>
            {WINDOWS.map((w, i) => <option key={w.label} value={i}>{w.label}</option>)}
          </select>
        </div>
      </div>
      {error && <p role="alert" className="error">{error}</p>}
      {!loaded && <p>Loading vital signs…</p>}
      {loaded && !state.hasReadings && (
        <p data-testid="no-readings">No readings yet: NEWS2 and the charts appear with the first reading from a monitor.</p>
      )}
      {state.news2 && <News2Breakdown news2={state.news2} recent={state.recent} />}
      {state.hasReadings && (
        <div className="charts vitals-charts" data-testid="vitals-charts">
          {CHARTS.map((spec) => (
            <VitalChart key={spec.title} spec={spec} points={shown} from={from} to={to} />
          ))}
        </div>
      )}
    </section>
  );
}

function News2Breakdown({ news2, recent }: { news2: News2; recent: Point[] }) {
  const rows = breakdown(news2, recent);
  const partial = news2.missing.length > 0;
  return (
    <div className="card news2-card" data-testid="news2-breakdown">
      <h3>
        NEWS2 <News2Badge total={news2.total} risk={news2.risk} />
      </h3>
      <p className="hint">
        Scored {dateTime(news2.assessed_at)}.
        {partial && ` Partial score: ${String(news2.missing.length)} of 7 parameters missing.`}
      </p>
      <table className="board" aria-label="NEWS2 score by parameter">
        <thead>
          <tr>
            <th scope="col">Parameter</th>
            <th scope="col">Value</th>
            <th scope="col">Score</th>
            <th scope="col">Basis</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={row.key} data-parameter={row.key} data-basis={row.basis}>
              <th scope="row">{row.label}</th>
              <td>{row.value ?? "—"}</td>
              <td className={row.score !== null && row.score >= 3 ? "red-score" : undefined} data-score={row.score ?? ""}>
                {row.score ?? "—"}
              </td>
              <td>
                {row.basis === "measured" && "Measured"}
                {row.basis === "carried forward" && <><span aria-hidden="true">↻ </span>Carried forward (≤ 15 min)</>}
                {row.basis === "missing" && <><span aria-hidden="true">⚠ </span>Missing: not scored</>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
