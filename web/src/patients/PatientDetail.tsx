import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useId, useState, type SyntheticEvent } from "react";
import { Link, useParams } from "react-router";

import { useAccess } from "../access/AccessProvider";
import { PatientAlerts } from "../alerts/PatientAlerts";
import { ApiError, changeStatus, getHistory, getPatient } from "../api/client";
import { STATUSES, type Status } from "../api/types";
import { age, dateTime, duration } from "../format";
import { useLive } from "../live/LiveProvider";
import { reload } from "../reload";
import { STATUS_LABEL, StatusBadge } from "../status";
import { useNow } from "../useNow";
import { VitalsPanel } from "../vitals/VitalsPanel";

/** One patient: who they are, their stay so far, and the status change form (where allowed). */
export function PatientDetail() {
  const { id = "" } = useParams();
  const queries = useQueryClient();
  const patient = useQuery({ queryKey: ["patient", id], queryFn: () => getPatient(id) });
  const history = useQuery({ queryKey: ["history", id], queryFn: () => getHistory(id) });
  const now = useNow();
  const { may } = useAccess();

  const refresh = () => {
    void reload(queries, ["patient", id]);
    void reload(queries, ["history", id]);
  };
  useLive({
    onMessage: (m) => {
      if (m.data.patient_id === id) refresh();
    },
    onResync: refresh,
  });

  if (patient.isPending) return <p>Loading patient…</p>;
  if (patient.isError) {
    return (
      <section>
        <h1>Patient</h1>
        <p role="alert" className="error">{patient.error.message}</p>
        <Link to="/">Back to the ward board</Link>
      </section>
    );
  }
  const p = patient.data;
  return (
    <section aria-labelledby="patient-title">
      <p><Link to="/">← Ward board</Link></p>
      <div className="page-head">
        <h1 id="patient-title">{p.family_name}, {p.given_name}</h1>
        <StatusBadge status={p.status} />
      </div>
      <div className="columns">
        <dl className="facts">
          <dt>MRN</dt><dd>{p.mrn}</dd>
          <dt>Born</dt><dd>{p.birth_date} ({age(p.birth_date)} years)</dd>
          <dt>Sex</dt><dd>{p.sex}</dd>
          <dt>Ward</dt><dd>{p.ward}</dd>
          <dt>Bed</dt><dd>{p.bed ?? "—"}</dd>
          <dt>Status</dt><dd>{STATUS_LABEL[p.status]} for {duration(p.status_since, now)}</dd>
          <dt>Registered</dt><dd>{dateTime(p.created_at)}</dd>
        </dl>
        {may("changeStatus") && (
          <StatusForm key={`${p.id}-${p.version}`} patientId={p.id} current={p.status} onChanged={refresh} />
        )}
      </div>
      <VitalsPanel key={p.id} patientId={p.id} />
      {may("alerts") && <PatientAlerts patientId={p.id} name={`${p.family_name}, ${p.given_name}`} />}
      <h2>Timeline</h2>
      {history.isPending && <p>Loading history…</p>}
      {history.isError && <p role="alert" className="error">{history.error.message}</p>}
      {history.data && (
        <ol className="timeline" aria-label="Status timeline, oldest first">
          {history.data.map((event) => (
            <li key={event.id}>
              <time dateTime={event.time}>{dateTime(event.time)}</time>{" "}
              {event.data.status && <StatusBadge status={event.data.status} />}{" "}
              <span className="event-type">{event.type}</span>
              {event.data.reason && <span className="reason"> — {event.data.reason}</span>}
              {event.data.source && <span className="hint"> (by {event.data.source})</span>}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

function StatusForm(props: { patientId: string; current: Status; onChanged: () => void }) {
  const choices = STATUSES.filter((s) => s !== props.current);
  const [status, setStatus] = useState<Status | "">("");
  const [reason, setReason] = useState("");
  const ids = { status: useId(), reason: useId(), error: useId() };
  const mutation = useMutation({
    mutationFn: () => changeStatus(props.patientId, status as Status, reason.trim() || null),
    onSuccess: props.onChanged,
  });
  const submit = (e: SyntheticEvent) => {
    e.preventDefault();
    if (status) mutation.mutate();
  };
  const problem = mutation.error instanceof ApiError ? mutation.error.problem : null;

  if (props.current === "discharged") {
    return <p className="hint">Discharged: the stay has ended and the status can no longer change.</p>;
  }
  return (
    <form className="card" onSubmit={submit} aria-labelledby={`${ids.status}-title`}>
      <h2 id={`${ids.status}-title`}>Change status</h2>
      <label htmlFor={ids.status}>New status</label>
      <select
        id={ids.status}
        value={status}
        required
        aria-describedby={problem ? ids.error : undefined}
        onChange={(e) => { setStatus(e.target.value as Status | ""); }}
      >
        <option value="">Choose…</option>
        {choices.map((s) => (
          <option key={s} value={s}>{STATUS_LABEL[s]}</option>
        ))}
      </select>
      <label htmlFor={ids.reason}>Reason (optional)</label>
      <input id={ids.reason} value={reason} onChange={(e) => { setReason(e.target.value); }} />
      {mutation.isError && (
        <div id={ids.error} role="alert" className="error">
          <strong>{problem?.title ?? "Not changed"}:</strong> {mutation.error.message}
        </div>
      )}
      <button type="submit" disabled={!status || mutation.isPending}>
        {mutation.isPending ? "Saving…" : "Change status"}
      </button>
    </form>
  );
}
