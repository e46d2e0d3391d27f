import { useId, useMemo, useState } from "react";
import { Link } from "react-router";

import { useAccess } from "../access/AccessProvider";
import { STATUSES } from "../api/types";
import { duration } from "../format";
import { News2Badge } from "../news2";
import { STATUS_LABEL, StatusBadge } from "../status";
import { useNow } from "../useNow";
import { useBoard } from "./BoardProvider";
import {
  type BoardFilter,
  type BoardNews2,
  defaultFilter,
  groupByWard,
  wardNames,
} from "./boardState";

/** The latest NEWS2 with its risk in words and how old it is; "no readings" when never scored. */
function Score({ news2, now }: { news2: BoardNews2 | undefined; now: number }) {
  if (news2 === undefined) return <span className="hint">no readings</span>;
  return (
    <>
      <News2Badge total={news2.total} risk={news2.risk} />{" "}
      <time className="hint" dateTime={news2.assessed_at}>{duration(news2.assessed_at, now)} ago</time>
    </>
  );
}

/** The charge nurse's screen: every patient by ward, kept live. */
export function WardBoard() {
  const { state, error } = useBoard();
  const { may } = useAccess();
  const [filter, setFilter] = useState<BoardFilter>(defaultFilter);
  const now = useNow();
  const groups = useMemo(() => groupByWard(state, filter), [state, filter]);
  const wards = useMemo(() => wardNames(state), [state]);
  const shown = groups.reduce((n, g) => n + g.patients.length, 0);
  const ids = { ward: useId(), status: useId(), search: useId() };

  return (
    <section aria-labelledby="board-title">
      <div className="page-head">
        <h1 id="board-title">Ward board</h1>
        {may("register") && (
          <Link className="button" to="/patients/new">
            Register patient
          </Link>
        )}
      </div>
      <form className="filters" role="search" onSubmit={(e) => { e.preventDefault(); }}>
        <label htmlFor={ids.search}>Search name or MRN</label>
        <input
          id={ids.search}
          type="search"
          value={filter.search}
          onChange={(e) => { setFilter({ ...filter, search: e.target.value }); }}
        />
        <label htmlFor={ids.ward}>Ward</label>
        <select
          id={ids.ward}
          value={filter.ward}
          onChange={(e) => { setFilter({ ...filter, ward: e.target.value }); }}
        >
          <option value="">All wards</option>
          {wards.map((w) => (
            <option key={w} value={w}>{w}</option>
          ))}
        </select>
        <label htmlFor={ids.status}>Status</label>
        <select
          id={ids.status}
          value={filter.status}
          onChange={(e) => { setFilter({ ...filter, status: e.target.value as BoardFilter["status"] }); }}
        >
          <option value="active">All but discharged</option>
          <option value="all">All</option>
          {STATUSES.map((s) => (
            <option key={s} value={s}>{STATUS_LABEL[s]}</option>
          ))}
        </select>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
      <p className="hint" aria-live="polite">
        {state.loaded ? `${shown} patient${shown === 1 ? "" : "s"} shown` : "Loading patients…"}
        {!state.complete && " (only the first 10,000 patients are loaded: search covers those)"}
      </p>
      {groups.map(({ ward, patients }) => (
        <section key={ward} className="ward" aria-labelledby={`ward-${ward}`}>
          <h2 id={`ward-${ward}`}>
            {ward} <span className="count">{patients.length}</span>
          </h2>
          <table className="board">
            <thead>
              <tr>
                <th scope="col">Bed</th>
                <th scope="col">Patient</th>
                <th scope="col">MRN</th>
                <th scope="col">Status</th>
                <th scope="col">NEWS2</th>
                <th scope="col">In status for</th>
              </tr>
            </thead>
            <tbody>
              {patients.map((p) => (
                <tr key={p.id} data-patient-id={p.id} className={`row-${p.status}`}>
                  <td>{p.bed ?? "—"}</td>
                  <td>
                    <Link to={`/patients/${p.id}`}>
                      {p.person ? `${p.person.family_name}, ${p.person.given_name}` : "Loading name…"}
                    </Link>
                  </td>
                  <td>{p.person?.mrn ?? ""}</td>
                  <td><StatusBadge status={p.status} /></td>
                  <td data-testid="board-news2">
                    <Score news2={state.news2[p.id]} now={now} />
                  </td>
                  <td>{duration(p.status_since, now)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      ))}
      {state.loaded && shown === 0 && <p>No patients match.</p>}
    </section>
  );
}
