import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useEffect, useId, useRef, useState, type SyntheticEvent } from "react";
import { useNavigate } from "react-router";

import { ApiError, registerPatient } from "../api/client";
import { SEXES } from "../api/types";
import { useBoard } from "../board/BoardProvider";
import { wardNames } from "../board/boardState";
import { EMPTY, type Fields, toBody } from "./registration";


const LABELS: Record<keyof Fields, string> = {
  given_name: "Given name",
  family_name: "Family name",
  birth_date: "Birth date",
  sex: "Sex",
  ward: "Ward",
  bed: "Bed (optional)",
  mrn: "MRN (optional: generated when empty)",
};

/**
 * Registration. The API is the one judge of what is valid: the form sends what was typed and
 * shows the problem's `errors` next to their fields, so the messages are exactly the API's.
 */
export function RegisterPatient() {
  const [fields, setFields] = useState<Fields>(EMPTY);
  const navigate = useNavigate();
  const queries = useQueryClient();
  const { state } = useBoard();
  const summary = useRef<HTMLDivElement>(null);
  const base = useId();
  const mutation = useMutation({
    mutationFn: () => registerPatient(toBody(fields)),
    onSuccess: (patient) => {
      queries.setQueryData(["patient", patient.id], patient);
      void navigate(`/patients/${patient.id}`);
    },
  });
  const error = mutation.error instanceof ApiError ? mutation.error : null;
  useEffect(() => {
    // move focus to the summary so keyboard and screen-reader users learn what went wrong
    if (mutation.error) summary.current?.focus();
  }, [mutation.error]);
  const submit = (e: SyntheticEvent) => {
    e.preventDefault();
    mutation.mutate();
  };
  const field = (name: keyof Fields) => {
    const message = error?.fieldMessage(name);
    const id = `${base}-${name}`;
    return {
      id,
      name,
      value: fields[name],
      "aria-invalid": message ? true : undefined,
      "aria-describedby": message ? `${id}-error` : undefined,
      onChange: (e: { target: { value: string } }) => { setFields({ ...fields, [name]: e.target.value }); },
    };
  };
  const fieldError = (name: keyof Fields) => {
    const message = error?.fieldMessage(name);
    return message ? <p id={`${base}-${name}-error`} className="field-error">{message}</p> : null;
  };
  const row = (name: keyof Fields, input: React.ReactNode) => (
    <div className="field">
      <label htmlFor={`${base}-${name}`}>{LABELS[name]}</label>
      {input}
      {fieldError(name)}
    </div>
  );
  const unlisted = error?.problem.errors?.filter((e) => !(e.field in LABELS)) ?? [];

  return (
    <section aria-labelledby="register-title">
      <h1 id="register-title">Register patient</h1>
      <form className="card register" noValidate onSubmit={submit}>
        {mutation.isError && (
          <div ref={summary} tabIndex={-1} role="alert" className="error">
            <strong>{error?.problem.title ?? "Not registered"}</strong>
            {error?.problem.errors?.length ? (
              <ul>
                {error.problem.errors.map((e) => (
                  <li key={e.field}>
                    {(LABELS as Record<string, string>)[e.field] ?? e.field}: {e.message}
                  </li>
                ))}
              </ul>
            ) : (
              <p>{mutation.error.message}</p>
            )}
            {unlisted.length > 0 && <p>{unlisted.map((e) => e.message).join("; ")}</p>}
          </div>
        )}
        {row("given_name", <input autoComplete="off" {...field("given_name")} />)}
        {row("family_name", <input autoComplete="off" {...field("family_name")} />)}
        {row("birth_date", <input type="date" {...field("birth_date")} />)}
        {row(
          "sex",
          <select {...field("sex")}>
            <option value="">Choose…</option>
            {SEXES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>,
        )}
        {row("ward", <input list={`${base}-wards`} autoComplete="off" {...field("ward")} />)}
        <datalist id={`${base}-wards`}>
          {wardNames(state).map((w) => <option key={w} value={w} />)}
        </datalist>
        {row("bed", <input autoComplete="off" {...field("bed")} />)}
        {row("mrn", <input autoComplete="off" {...field("mrn")} />)}
        <button type="submit" disabled={mutation.isPending}>
          {mutation.isPending ? "Registering…" : "Register"}
        </button>
      </form>
    </section>
  );
}
