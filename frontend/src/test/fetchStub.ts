import { vi } from 'vitest';

export interface RecordedCall {
  method: string;
  path: string;
  headers: Record<string, string>;
  credentials: RequestCredentials | undefined;
  body: unknown;
  /** The query string, without '?'. */
  search: string;
  /** Multipart bodies (FormData), when one was sent. */
  form: FormData | undefined;
  /** The request's AbortSignal, when one was passed. */
  signal: AbortSignal | undefined;
}

type Handler = (call: RecordedCall) => Response | Promise<Response>;

export function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' },
  });
}

export function emptyResponse(status = 204): Response {
  return new Response(null, { status });
}

export function errorBody(
  status: number,
  code: string,
  message: string,
  fields?: Record<string, string[]>,
) {
  return { error: { status, code, message, ...(fields ? { fields } : {}), request_id: 'req-test-1' } };
}

/**
 * Stub global fetch with a routing table keyed by "METHOD /path" (path without
 * origin). Unknown routes fail the test loudly. Returns the recorded calls.
 */
export function stubFetch(routes: Record<string, Handler>): RecordedCall[] {
  const calls: RecordedCall[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(String(input), window.location.origin);
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, key) => {
      headers[key] = value;
    });
    const call: RecordedCall = {
      method: (init.method ?? 'GET').toUpperCase(),
      path: url.pathname,
      headers,
      credentials: init.credentials,
      body: typeof init.body === 'string' ? (JSON.parse(init.body) as unknown) : undefined,
      search: url.search.replace(/^\?/, ''),
      form: init.body instanceof FormData ? init.body : undefined,
      signal: init.signal ?? undefined,
    };
    calls.push(call);
    const handler = routes[`${call.method} ${call.path}`];
    if (!handler) throw new Error(`Unexpected fetch: ${call.method} ${call.path}`);
    return handler(call);
  });
  vi.stubGlobal('fetch', fetchMock);
  return calls;
}
