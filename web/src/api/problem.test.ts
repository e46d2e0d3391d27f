import { describe, expect, it } from "vitest";

import { ApiError, toApiError } from "./problem";

const validation = {
  type: "/problems/validation-error",
  title: "Invalid request",
  status: 422,
  detail: "given_name: String should have at least 1 character",
  errors: [{ field: "given_name", message: "String should have at least 1 character", type: "string_too_short" }],
};

describe("toApiError", () => {
  it("keeps a problem+json body as the server sent it", () => {
    const error = toApiError(validation, new Response(null, { status: 422 }));
    expect(error).toBeInstanceOf(ApiError);
    expect(error.problem).toEqual(validation);
    expect(error.message).toBe(validation.detail);
    expect(error.fieldMessage("given_name")).toBe("String should have at least 1 character");
    expect(error.fieldMessage("ward")).toBeUndefined();
  });

  it("explains a response that is not a problem, e.g. a proxy's HTML page", () => {
    const error = toApiError("<html>bad gateway</html>", new Response(null, { status: 502, statusText: "Bad Gateway" }));
    expect(error.problem.status).toBe(502);
    expect(error.problem.title).toBe("Bad Gateway");
    expect(error.message).toBe("The server answered 502 Bad Gateway");
    expect(error.fieldMessage("given_name")).toBeUndefined();
  });
});
