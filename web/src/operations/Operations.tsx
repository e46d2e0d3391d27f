import { useQuery } from "@tanstack/react-query";
import { useReducer } from "react";
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

import { getReadiness } from "../api/client";
import type { Readiness } from "../api/types";
import { useConnectionState, useLive, useLiveTopics } from "../live/LiveProvider";
import { initialMetrics, metricsReducer, totals } from "./metricsState";

const HEALTH_LABEL: Record<Readiness["status"], string> = {
  healthy: "Healthy",
  degraded: "Degraded",
  unhealthy: "Unhealthy",
};
const HEALTH_SYMBOL: Record<Readiness["status"], string> = {
  healthy: "✓",
  degraded: "◐",
  unhealthy: "✕",
};

function seconds(t: number): string {
  return new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/**
 * The operations lead's view: throughput, queue, dead letters and clients pushed every second
 * by `MetricsUpdated` on the `metrics` topic (subscribed only while this view is open), and
 * service health from /health/ready, which nothing pushes: asked every 5 s.
 */
export function Operations() {
  const ready = useQuery({ queryKey: ["ready"], queryFn: getReadiness, refetchInterval: 5000 });
  const live = useConnectionState();
  const [metrics, dispatch] = useReducer(metricsReducer, initialMetrics);
  useLiveTopics(["metrics"]);
  useLive({
    onMessage: (message) => {
      dispatch(message);
    },
  });
  const now = totals(metrics);
  const data = ready.data;

  return (
    <section aria-labelledby="ops-title">
      <h1 id="ops-title">Operations</h1>
      {ready.isError && <p role="alert" className="error">Readiness could not be read: {ready.error.message}</p>}
      {data && (
        <p className={`health health-${data.status}`} data-testid="health-status">
          <span aria-hidden="true">{HEALTH_SYMBOL[data.status]} </span>
          Service: <strong>{HEALTH_LABEL[data.status]}</strong>
        </p>
      )}
      <h2>Live figures</h2>
      {now === null ? (
        <p className="hint" data-testid="metrics-waiting">Waiting for the first metrics from the server…</p>
      ) : (
        <>
          <dl className="tiles" aria-label="Live figures" data-testid="live-metrics">
            <div>
              <dt>Events in</dt>
              <dd data-testid="events-in">{now.eventsInPerS.toFixed(1)} /s</dd>
            </div>
            <div>
              <dt>Events processed</dt>
              <dd data-testid="events-processed">{now.eventsProcessedPerS.toFixed(1)} /s</dd>
            </div>
            <div>
              <dt>Worker queue</dt>
              <dd data-testid="queue-depth">{now.queueDepth} / {now.queueCapacity}</dd>
              <meter
                min={0}
                max={now.queueCapacity || 1}
                value={now.queueDepth}
                high={now.queueCapacity * 0.9}
                aria-label="Worker queue depth against capacity"
              />
            </div>
            <div>
              <dt>Dead letters</dt>
              <dd data-testid="dead-letters">{now.deadLetters ?? "unknown"}</dd>
            </div>
            <div>
              <dt>Connected clients</dt>
              <dd data-testid="connected-clients">{now.connectedClients}</dd>
            </div>
            <div>
              <dt>Alerts waiting</dt>
              <dd data-testid="open-alerts">
                {now.openAlerts === null
                  ? "unknown"
                  : `${String(now.openAlerts.critical ?? 0)} critical, ${String(now.openAlerts.urgent ?? 0)} urgent`}
              </dd>
            </div>
          </dl>
          <p className="hint">
            {now.instances === 1 ? "One server instance" : `${String(now.instances)} server instances, added up`};
            this screen's live link: {live}.
          </p>
          <figure className="chart" data-testid="rates-chart">
            <figcaption>Events per second, last two minutes</figcaption>
            <ResponsiveContainer width="100%" height={200}>
              <LineChart data={metrics.history} margin={{ top: 5, right: 10, bottom: 0, left: 0 }}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="t" type="number" scale="time" domain={["dataMin", "dataMax"]} tickFormatter={seconds} />
                <YAxis allowDecimals={false} width={40} />
                <Tooltip labelFormatter={(t) => seconds(Number(t))} />
                <Legend />
                <Line dataKey="eventsIn" name="In" stroke="#0072B2" dot={false} isAnimationActive={false} strokeWidth={2} />
                <Line dataKey="processed" name="Processed" stroke="#D55E00" strokeDasharray="5 3" dot={false} isAnimationActive={false} strokeWidth={2} />
              </LineChart>
            </ResponsiveContainer>
          </figure>
        </>
      )}
      {data && (
        <>
          <h2>Dependencies</h2>
          <table className="board" aria-label="Dependency checks">
            <thead><tr><th scope="col">Check</th><th scope="col">Status</th><th scope="col">Detail</th></tr></thead>
            <tbody>
              {Object.entries(data.checks).map(([name, check]) => (
                <tr key={name} data-check={name}>
                  <td>{name.replace(/_/g, " ")}</td>
                  <td>{typeof check.status === "string" ? check.status : "—"}</td>
                  <td>
                    {Object.entries(check)
                      .filter(([k]) => k !== "status")
                      .map(([k, v]) => `${k.replace(/_/g, " ")}: ${String(v)}`)
                      .join(", ")}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
