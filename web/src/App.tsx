import { useEffect, useRef } from "react";
import { Navigate, NavLink, Outlet, Route, Routes, useLocation } from "react-router";

import { Permitted, useAccess } from "./access/AccessProvider";
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

/** The views this user may open, in order; the others are not offered at all. */
function MainNav() {
  const { views } = useAccess();
  return (
    <nav aria-label="Main">
      {views.map((view) =>
        view.feature === "alerts" ? (
          <AlertsLink key={view.path} />
        ) : (
          <NavLink key={view.path} to={view.path} end={view.path === "/"}>
            {view.label}
          </NavLink>
        ),
      )}
    </nav>
  );
}

function Layout() {
  useFocusOnNavigation();
  const { may } = useAccess();
  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="top">
        <span className="brand">HealthFlow</span>
        <MainNav />
        {may("live") && <LiveIndicator />}
      </header>
      {may("alerts") && <CriticalBanner />}
      <main id="main" tabIndex={-1}>
        <Outlet />
      </main>
    </>
  );
}

function NotFound() {
  const { home } = useAccess();
  return (
    <section>
      <h1>Page not found</h1>
      {home && (
        <p>
          <NavLink to={home}>Go to your start page</NavLink>
        </p>
      )}
    </section>
  );
}

/** `/`: the ward board, or for a role without it the first view it may open. */
function Home() {
  const { may, home } = useAccess();
  if (may("board")) return <WardBoard />;
  if (home) return <Navigate to={home} replace />;
  return (
    <section>
      <h1>Nothing to show for your role</h1>
      <p>Your sign-in allows none of the dashboard's views. Ask your administrator for a role.</p>
    </section>
  );
}

export function App() {
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<Home />} />
        <Route path="patients/new" element={<Permitted feature="register"><RegisterPatient /></Permitted>} />
        <Route path="patients/:id" element={<Permitted feature="patient"><PatientDetail /></Permitted>} />
        <Route path="alerts" element={<Permitted feature="alerts"><AlertsView /></Permitted>} />
        <Route path="analytics" element={<Permitted feature="analytics"><Analytics /></Permitted>} />
        <Route path="operations" element={<Permitted feature="operations"><Operations /></Permitted>} />
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}
