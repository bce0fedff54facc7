import { describe, expect, it, vi } from 'vitest';
import { ApiError, api, readCookie, toApiError } from './client';
import { emptyResponse, errorBody, jsonResponse, stubFetch } from '../test/fetchStub';

describe('toApiError', () => {
  it('parses the backend error format, including dotted field names', () => {
    const err = toApiError(
      400,
      errorBody(400, 'invalid', 'Check the highlighted fields.', {
        email: ['This field is required.'],
        'layers.0.name': ['Too long.', 'Must be unique.'],
      }),
    );
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toBeInstanceOf(Error);
    expect(err.status).toBe(400);
    expect(err.code).toBe('invalid');
    expect(err.message).toBe('Check the highlighted fields.');
    expect(err.requestId).toBe('req-test-1');
    expect(err.fieldErrors('email')).toEqual(['This field is required.']);
    expect(err.fieldErrors('layers.0.name')).toEqual(['Too long.', 'Must be unique.']);
    expect(err.fieldErrors('password')).toEqual([]);
    expect(err.hasFieldErrors).toBe(true);
  });

  it('falls back to a generic error when the body is not in the API format', () => {
    const err = toApiError(502, '<html>Bad gateway</html>', 'Bad Gateway');
    expect(err.status).toBe(502);
    expect(err.code).toBe('http_error');
    expect(err.message).toMatch(/HTTP 502/);
    expect(err.fields).toEqual({});
    expect(err.hasFieldErrors).toBe(false);
  });
});

describe('api client', () => {
  it('GET sends credentials and no CSRF header, and returns parsed JSON', async () => {
    const calls = stubFetch({
      'GET /api/v1/auth/me': () =>
        jsonResponse(200, { id: 1, email: 'd@example.com', display_name: 'Dana', role: 'designer' }),
    });
    const user = await api.get<{ email: string }>('/auth/me');
    expect(user.email).toBe('d@example.com');
    expect(calls).toHaveLength(1);
    expect(calls[0]?.credentials).toBe('same-origin');
    expect(calls[0]?.headers['x-csrftoken']).toBeUndefined();
  });

  it('unsafe requests fetch the CSRF cookie first when missing, then send X-CSRFToken', async () => {
    expect(readCookie('csrftoken')).toBeNull();
    const calls = stubFetch({
      'GET /api/v1/auth/csrf': () => {
        document.cookie = 'csrftoken=tok-123; path=/';
        return emptyResponse(204);
      },
      'POST /api/v1/auth/logout': () => emptyResponse(204),
    });
    await expect(api.post('/auth/logout')).resolves.toBeUndefined();
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      'GET /api/v1/auth/csrf',
      'POST /api/v1/auth/logout',
    ]);
    expect(calls[1]?.headers['x-csrftoken']).toBe('tok-123');
    expect(calls[1]?.credentials).toBe('same-origin');
  });

  it('reuses an existing csrftoken cookie and sends a JSON body', async () => {
    document.cookie = 'csrftoken=existing%20tok; path=/';
    const calls = stubFetch({
      'PATCH /api/v1/templates/7': () => jsonResponse(200, { id: 7 }),
    });
    await api.patch('/templates/7', { name: 'Headshot' });
    expect(calls).toHaveLength(1);
    expect(calls[0]?.headers['x-csrftoken']).toBe('existing tok');
    expect(calls[0]?.headers['content-type']).toBe('application/json');
    expect(calls[0]?.body).toEqual({ name: 'Headshot' });
  });

  it('rejects with a parsed ApiError on an error response', async () => {
    document.cookie = 'csrftoken=t; path=/';
    stubFetch({
      'POST /api/v1/auth/login': () =>
        jsonResponse(400, errorBody(400, 'invalid_credentials', 'Email or password is incorrect.')),
    });
    const err = await api.post('/auth/login', { email: 'a@b.c', password: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({
      status: 400,
      code: 'invalid_credentials',
      message: 'Email or password is incorrect.',
      fields: {},
    });
  });

  it('turns a network failure into an ApiError with status 0', async () => {
    vi.stubGlobal('fetch', vi.fn(() => Promise.reject(new TypeError('Failed to fetch'))));
    await expect(api.get('/auth/me')).rejects.toMatchObject({ status: 0, code: 'network_error' });
  });
});
