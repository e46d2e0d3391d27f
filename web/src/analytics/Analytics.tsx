import { keepPreviousData, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useId, useRef, useState } from "react";
import {
  Bar,
  BarChart,
  CartesianGrid,
  Legend,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";

import { useAccess } from "../access/AccessProvider";
import { getDashboard } from "../api/client";
import { STATUSES } from "../api/types";
import { dateTime } from "../format";
import { useLive, useLiveTopics } from "../live/LiveProvider";
import { METRICS } from "../live/topics";
import { reload } from "../reload";
import { STATUS_LABEL } from "../status";

const RANGES = [7, 14, 30, 90];
const POLL_MS = 30_000;
// A colour-blind-safe palette (Okabe–Ito); every chart also has a table or labels in words.
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000"];
const SEVERITY_BARS = [
  { key: "critical", name: "Critical", colour: PALETTE[5] },
  { key: "urgent", name: "Urgent", colour: PALETTE[1] },
] as const;

/** The operations lead's hourly look: registrations, events, statuses and alerts over N days. */
export function Analytics() {
  const [days, setDays] = useState(7);
  const rangeId = useId();
  const queries = useQueryClient();
  // without the live socket (an analyst's role) nothing says when to refetch: ask now and then
  const live = useAccess().may("live");
  const summary = useQuery({
    queryKey: ["dashboard", days],
    queryFn: () => getDashboard(days),
    placeholderData: keepPreviousData,
    refetchInterval: live ? false : POLL_MS,
  });
  useRefreshOnEvents(() => {
    void reload(queries, ["dashboard"]);
  });

  const data = summary.data;
  const types = data
    ? [...new Set(data.events_by_type_by_day.flatMap((d) => Object.keys(d.counts)))].sort()
    : [];
  const eventsByDay = data?.events_by_type_by_day.map((d) => ({ day: d.day.slice(5), ...d.counts })) ?? [];
  const registrations = data?.registrations_by_day.map((d) => ({ day: d.day.slice(5), count: d.count })) ?? [];
  const byStatus = data ? STATUSES.map((s) => ({ status: STATUS_LABEL[s], count: data.patients_by_status[s] })) : [];
  const registeredInRange = data?.registrations_by_day.reduce((n, d) => n + d.count, 0) ?? 0;
  const alertsByDay = data?.alerts_by_day.map((d) => ({ day: d.day.slice(5), ...d.by_severity })) ?? [];
  const alertsInRange = data?.alerts_by_day.reduce((n, d) => n + d.count, 0) ?? 0;

  return (
    <section aria-labelledby="analytics-title">
      <div className="page-head">
        <h1 id="analytics-title">Analytics</h1>
        <div>
          <label htmlFor={rangeId}>Period </label>
          <select id={rangeId} value={days} onChange={(e) => { setDays(Number(e.target.value)); }}>
            {RANGES.map((n) => <option key={n} value={n}>Last {n} days</option>)}
          </select>
        </div>
      </div>
      {summary.isError && <p role="alert" className="error">{summary.error.message}</p>}
      {!data && summary.isPending && <p>Loading…</p>}
      {data && (
        <>
          <dl className="tiles" aria-label="Totals">
            <div><dt>Patients</dt><dd data-testid="patients-total">{data.patients_total}</dd></div>
            <div><dt>Registered in period</dt><dd data-testid="registered-in-range">{registeredInRange}</dd></div>
            <div><dt>Critical now</dt><dd data-testid="critical-now">{data.critical_now}</dd></div>
            <div>
              <dt>Average wait</dt>
              <dd data-testid="average-wait">
                {data.average_wait_minutes === null ? "no waits yet" : `${data.average_wait_minutes} min`}
              </dd>
            </div>
            <div><dt>Events processed</dt><dd data-testid="events-total">{data.events_processed_total}</dd></div>
            <div><dt>Alerts raised in period</dt><dd data-testid="alerts-in-range">{alertsInRange}</dd></div>
          </dl>
          <p className="hint">
            Computed {dateTime(data.generated_at)};{" "}
            {live ? "updates as events are processed." : `refreshed every ${String(POLL_MS / 1000)} s.`}
          </p>
          <div className="charts">
            <figure className="chart">
              <figcaption>Registrations per day</figcaption>
              <ResponsiveContainer width="100%" height={240}>
                <BarChart data={registrations} accessibilityLayer>
                  <CartesianGrid strokeDasharray="3 3" />
                  <XAxis dataKey="day" />
                  <YAxis allowDecimals={false} />
                  <Tooltip />
                  <Bar dataKey="count" name="Registrations" fill={PALETTE[0]} isAnimationActive={false} />
                </BarChart>
              </ResponsiveContainer>
            </figure>
            <figure className="chart">
              <figcaption>Events by type per day</figcaption>
              <ResponsiveContainer width="100%" height={240}>
                <BarChart data={eventsByDay} accessibilityLayer>
                  <CartesianGrid strokeDasharray="3 3" />
                  <XAxis dataKey="day" />
                  <YAxis allowDecimals={false} />
                  <Tooltip />
                  <Legend />
                  {types.map((t, i) => (
                    <Bar key={t} dataKey={t} stackId="events" fill={PALETTE[i % PALETTE.length]} isAnimationActive={false} />
                  ))}
                </BarChart>
              </ResponsiveContainer>
            </figure>
            <figure className="chart">
              <figcaption>Patients by status</figcaption>
              <ResponsiveContainer width="100%" height={240}>
                <BarChart data={byStatus} layout="vertical" accessibilityLayer>
                  <CartesianGrid strokeDasharray="3 3" />
                  <XAxis type="number" allowDecimals={false} />
                  <YAxis type="category" dataKey="status" width={100} />
                  <Tooltip />
                  <Bar dataKey="count" name="Patients" fill={PALETTE[2]} isAnimationActive={false} />
                </BarChart>
              </ResponsiveContainer>
            </figure>
            <figure className="chart">
              <figcaption>Alerts raised per day</figcaption>
              <ResponsiveContainer width="100%" height={240}>
                <BarChart data={alertsByDay} accessibilityLayer>
                  <CartesianGrid strokeDasharray="3 3" />
                  <XAxis dataKey="day" />
                  <YAxis allowDecimals={false} />
                  <Tooltip />
                  <Legend />
                  {SEVERITY_BARS.map((s) => (
                    <Bar key={s.key} dataKey={s.key} name={s.name} stackId="alerts" fill={s.colour} isAnimationActive={false} />
                  ))}
                </BarChart>
              </ResponsiveContainer>
            </figure>
          </div>
          <table className="board" aria-label="Alerts raised per day" data-testid="alerts-by-day">
            <caption>
              Alerts raised per day (by severity now: an urgent alert that escalated counts as critical)
            </caption>
            <thead>
              <tr>
                <th scope="col">Day</th>
                {SEVERITY_BARS.map((s) => <th key={s.key} scope="col">{s.name}</th>)}
                <th scope="col">All alerts</th>
              </tr>
            </thead>
            <tbody>
              {data.alerts_by_day.map((d) => (
                <tr key={d.day} data-alerts-day={d.day}>
                  <th scope="row">{d.day}</th>
                  {SEVERITY_BARS.map((s) => (
                    <td key={s.key} data-severity-count={s.key}>{d.by_severity[s.key]}</td>
                  ))}
                  <td data-alerts-count>{d.count}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <table className="board" aria-label="Patients by status">
            <thead><tr><th scope="col">Status</th><th scope="col">Patients</th></tr></thead>
            <tbody>
              {STATUSES.map((s) => (
                <tr key={s}><td>{STATUS_LABEL[s]}</td><td data-status-count={s}>{data.patients_by_status[s]}</td></tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

/**
 * Refetch after processed events and raised or escalated alerts, at most every two seconds
 * however fast they come. `EventProcessed` travels on `metrics`: subscribed while this view is
 * open (alerts come on a topic every screen has).
 */
function useRefreshOnEvents(refresh: () => void): void {
  useLiveTopics([METRICS]);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const latest = useRef(refresh);
  useEffect(() => {
    latest.current = refresh;
  });
  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
    },
    [],
  );
  const schedule = () => {
    timer.current ??= setTimeout(() => {
      timer.current = null;
      latest.current();
    }, 2000);
  };
  useLive({
    onMessage: (m) => {
      if (m.type === "EventProcessed" || m.type === "AlertRaised" || m.type === "AlertUpdated") schedule();
    },
    onResync: schedule,
  });
}
