/**
 * Small typed fetch wrapper for the Portrait Studio JSON API.
 *
 * - All requests are same-origin and send cookies (`credentials: 'same-origin'`).
 * - Unsafe requests (POST/PUT/PATCH/DELETE) send `X-CSRFToken` with the value of
 *   the `csrftoken` cookie; when the cookie is missing it is fetched first from
 *   `GET /api/v1/auth/csrf`.
 * - Non-2xx responses are turned into an `ApiError` parsed from the backend's
 *   single error format:
 *   `{"error": {"status", "code", "message", "fields"?, "request_id"?}}`.
 */

export const API_BASE = '/api/v1';
/** Studio endpoints live outside /api/v1; pass paths starting with /api/ as they are. */
export const STUDIO_BASE = '/api/studio';
export const CSRF_COOKIE = 'csrftoken';
export const CSRF_HEADER = 'X-CSRFToken';

export type FieldErrors = Record<string, string[]>;

export interface ApiErrorBody {
  error: {
    status: number;
    code: string;
    message: string;
    fields?: FieldErrors;
    request_id?: string;
  };
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: FieldErrors;
  readonly requestId: string | undefined;

  constructor(
    status: number,
    code: string,
    message: string,
    fields: FieldErrors = {},
    requestId?: string,
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.requestId = requestId;
  }

  /** Messages for one field (dotted names for nested fields), or []. */
  fieldErrors(name: string): string[] {
    return this.fields[name] ?? [];
  }

  get hasFieldErrors(): boolean {
    return Object.keys(this.fields).length > 0;
  }
}

const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function readCookie(name: string): string | null {
  if (typeof document === 'undefined' || !document.cookie) return null;
  for (const part of document.cookie.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) {
      return decodeURIComponent(part.slice(eq + 1).trim());
    }
  }
  return null;
}

function isStringArrayRecord(value: unknown): value is FieldErrors {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  return Object.values(value).every(
    (v) => Array.isArray(v) && v.every((item) => typeof item === 'string'),
  );
}

/** Build an ApiError from a parsed JSON body (or anything else) and an HTTP status. */
export function toApiError(status: number, body: unknown, statusText = ''): ApiError {
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const err = (body as { error: unknown }).error;
    if (typeof err === 'object' && err !== null) {
      const e = err as Record<string, unknown>;
      return new ApiError(
        typeof e.status === 'number' ? e.status : status,
        typeof e.code === 'string' ? e.code : 'error',
        typeof e.message === 'string' && e.message
          ? e.message
          : defaultMessage(status, statusText),
        isStringArrayRecord(e.fields) ? e.fields : {},
        typeof e.request_id === 'string' ? e.request_id : undefined,
      );
    }
  }
  return new ApiError(status, 'http_error', defaultMessage(status, statusText));
}

function defaultMessage(status: number, statusText: string): string {
  if (status >= 500) return `The server had a problem (HTTP ${status}). Please try again.`;
  return statusText ? `Request failed: ${status} ${statusText}` : `Request failed (HTTP ${status}).`;
}

async function parseBody(response: Response): Promise<unknown> {
  if (response.status === 204 || response.status === 205) return undefined;
  const text = await response.text();
  if (!text) return undefined;
  const type = response.headers.get('content-type') ?? '';
  if (type.includes('json')) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return undefined;
    }
  }
  return text;
}

/** Paths starting with /api/ are used as they are; others are relative to /api/v1. */
export function resolveUrl(path: string): string {
  return path.startsWith('/api/') ? path : `${API_BASE}${path}`;
}

/** Build a query string from defined values ("" when there are none). */
export function query(params: Record<string, string | number | boolean | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

let csrfRequest: Promise<void> | null = null;

/** Make sure the csrftoken cookie exists (GET /auth/csrf sets it). */
export async function ensureCsrfCookie(): Promise<string | null> {
  const existing = readCookie(CSRF_COOKIE);
  if (existing) return existing;
  // Concurrent unsafe requests share one GET /auth/csrf.
  csrfRequest ??= rawRequest<void>('GET', '/auth/csrf');
  try {
    await csrfRequest;
  } finally {
    csrfRequest = null;
  }
  return readCookie(CSRF_COOKIE);
}

export interface RequestOptions {
  body?: unknown;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

async function rawRequest<T>(
  method: string,
  path: string,
  options: RequestOptions = {},
  csrfToken?: string | null,
): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', ...options.headers };
  const init: RequestInit = { method, headers, credentials: 'same-origin' };
  if (options.signal) init.signal = options.signal;
  if (options.body instanceof FormData) {
    // The browser sets the multipart boundary itself.
    init.body = options.body;
  } else if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  if (csrfToken) headers[CSRF_HEADER] = csrfToken;

  let response: Response;
  try {
    response = await fetch(resolveUrl(path), init);
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network_error', 'Could not reach the server. Check your connection and try again.');
  }
  const body = await parseBody(response);
  if (!response.ok) throw toApiError(response.status, body, response.statusText);
  return body as T;
}

/**
 * Perform an API request. `path` is relative to /api/v1 (e.g. "/auth/me") unless it starts
 * with /api/ (e.g. "/api/studio/templates"). A FormData body is sent as multipart.
 */
export async function request<T>(
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<T> {
  const upper = method.toUpperCase();
  let token: string | null = null;
  if (UNSAFE_METHODS.has(upper)) token = await ensureCsrfCookie();
  return rawRequest<T>(upper, path, options, token);
}

export const api = {
  get: <T>(path: string, options?: RequestOptions) => request<T>('GET', path, options),
  post: <T>(path: string, body?: unknown, options?: RequestOptions) =>
    request<T>('POST', path, { ...options, body }),
  put: <T>(path: string, body?: unknown, options?: RequestOptions) =>
    request<T>('PUT', path, { ...options, body }),
  patch: <T>(path: string, body?: unknown, options?: RequestOptions) =>
    request<T>('PATCH', path, { ...options, body }),
  delete: <T>(path: string, options?: RequestOptions) => request<T>('DELETE', path, options),
};
