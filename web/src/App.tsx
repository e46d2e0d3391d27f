import { useEffect, useRef } from "react";
import { NavLink, Outlet, Route, Routes, useLocation } from "react-router";

import { AlertsView } from "./alerts/AlertsView";
import { useAlerts } from "./alerts/AlertsProvider";
import { waitingCount } from "./alerts/alertsState";
import { CriticalBanner } from "./alerts/CriticalBanner";
import { Analytics } from "./analytics/Analytics";
import { WardBoard } from "./board/WardBoard";
import { useConnectionState } from "./live/LiveProvider";
import type { ConnectionState } from "./live/socket";
import { Operations } from "./operations/Operations";
import { PatientDetail } from "./patients/PatientDetail";
import { RegisterPatient } from "./patients/RegisterPatient";

const LINK_LABEL: Record<ConnectionState, string> = {
  connecting: "Connecting…",
  open: "Live",
  reconnecting: "Reconnecting…",
  stopped: "Offline",
};

function LiveIndicator() {
  const state = useConnectionState();
  return (
    <p className={`live live-${state}`} role="status" data-live-state={state}>
      <span aria-hidden="true">{state === "open" ? "●" : "○"}</span> {LINK_LABEL[state]}
    </p>
  );
}

/** After a client-side navigation, focus the new page's content, as a page load would. */
function useFocusOnNavigation() {
  const { pathname } = useLocation();
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    document.getElementById("main")?.focus();
  }, [pathname]);
}

/** "Alerts" with how many wait for acknowledgement, in words for screen readers too. */
function AlertsLink() {
  const waiting = waitingCount(useAlerts().state);
  return (
    <NavLink to="/alerts">
      Alerts
      {waiting > 0 && (
        <span className="nav-count" data-testid="alerts-waiting">
          {waiting}
          <span className="visually-hidden"> waiting</span>
        </span>
      )}
    </NavLink>
  );
}

function Layout() {
  useFocusOnNavigation();
  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="top">
        <span className="brand">HealthFlow</span>
        <nav aria-label="Main">
          <NavLink to="/" end>Ward board</NavLink>
          <NavLink to="/patients/new">Register</NavLink>
          <AlertsLink />
          <NavLink to="/analytics">Analytics</NavLink>
          <NavLink to="/operations">Operations</NavLink>
        </nav>
        <LiveIndicator />
      </header>
      <CriticalBanner />
      <main id="main" tabIndex={-1}>
        <Outlet />
      </main>
    </>
  );
}

function NotFound() {
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        <NavLink to="/">Go to the ward board</NavLink>
      </p>
    </section>
  );
}

export function App() {
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<WardBoard />} />
        <Route path="patients/new" element={<RegisterPatient />} />
        <Route path="patients/:id" element={<PatientDetail />} />
        <Route path="alerts" element={<AlertsView />} />
        <Route path="analytics" element={<Analytics />} />
        <Route path="operations" element={<Operations />} />
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}
