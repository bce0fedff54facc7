import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { App } from './App';
import { emptyResponse, errorBody, jsonResponse, stubFetch } from './test/fetchStub';

function user(role: 'designer' | 'reviewer' | 'operator') {
  return { id: 2, email: `${role}@example.com`, display_name: role, role };
}

function renderAt(path: string) {
  window.history.pushState(null, '', path);
  return render(<App />);
}

describe('Home page', () => {
  it('redirects to /studio/login when not signed in', async () => {
    stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(401, errorBody(401, 'not_authenticated', 'Sign in.')),
    });
    renderAt('/studio/');
    expect(await screen.findByRole('heading', { name: 'Sign in' })).toBeTruthy();
    expect(window.location.pathname).toBe('/studio/login');
  });

  it('shows a loading state while /auth/me is pending', async () => {
    stubFetch({ 'GET /api/v1/auth/me': () => new Promise<Response>(() => {}) });
    renderAt('/studio/');
    expect((await screen.findByRole('status')).textContent).toContain('Loading');
  });

  it('shows the error message when /auth/me fails with a non-401 error', async () => {
    stubFetch({
      'GET /api/v1/auth/me': () =>
        jsonResponse(503, errorBody(503, 'unavailable', 'The studio is down for maintenance.')),
    });
    renderAt('/studio/');
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('The studio is down for maintenance.');
    expect(screen.getByRole('button', { name: 'Try again' })).toBeTruthy();
    expect(window.location.pathname).toBe('/studio/');
  });

  it.each([
    ['designer', ['My templates']],
    ['reviewer', ['Review queue', 'Catalog order', 'My templates']],
    ['operator', ['Test avatars', 'Backend dashboard', 'Invitations']],
  ] as const)('shows the %s their own navigation', async (role, labels) => {
    stubFetch({ 'GET /api/v1/auth/me': () => jsonResponse(200, user(role)) });
    renderAt('/studio/');
    expect((await screen.findByTestId('role')).textContent).toBe(role);
    expect(screen.getByText(/Signed in as/).textContent).toBe(`Signed in as ${role}@example.com`);
    const nav = screen.getByRole('navigation', { name: 'Main' });
    const links = Array.from(nav.querySelectorAll('a')).map((a) => [a.textContent, a.getAttribute('href')]);
    expect(links.map((l) => l[0])).toEqual(labels);
    for (const link of links) expect(link[1]).toMatch(/^\/studio\//);
  });

  it('signs out and returns to the login page', async () => {
    let signedIn = true;
    const calls = stubFetch({
      'GET /api/v1/auth/me': () =>
        signedIn ? jsonResponse(200, user('reviewer')) : jsonResponse(401, errorBody(401, 'x', 'x')),
      'GET /api/v1/auth/csrf': () => {
        document.cookie = 'csrftoken=tok; path=/';
        return emptyResponse(204);
      },
      'POST /api/v1/auth/logout': () => {
        signedIn = false;
        return emptyResponse(204);
      },
    });
    renderAt('/studio/');
    fireEvent.click(await screen.findByRole('button', { name: 'Sign out' }));
    expect(await screen.findByRole('heading', { name: 'Sign in' })).toBeTruthy();
    expect(window.location.pathname).toBe('/studio/login');
    const logout = calls.find((c) => c.path === '/api/v1/auth/logout');
    expect(logout?.method).toBe('POST');
    expect(logout?.headers['x-csrftoken']).toBe('tok');
  });

  it('accepts the bare /studio URL and links home to /studio/', async () => {
    stubFetch({ 'GET /api/v1/auth/me': () => jsonResponse(200, user('designer')) });
    renderAt('/studio');
    expect((await screen.findByTestId('role')).textContent).toBe('designer');
    expect(window.location.pathname).toBe('/studio/');
    expect(screen.getByRole('link', { name: 'Portrait Studio' }).getAttribute('href')).toBe('/studio/');
    const nav = screen.getByRole('navigation', { name: 'Main' });
    expect(within(nav).getByRole('link', { name: 'My templates' }).getAttribute('href')).toBe('/studio/templates');
  });

  it('tells a signed-in user when an area is not for their role', async () => {
    stubFetch({ 'GET /api/v1/auth/me': () => jsonResponse(200, user('operator')) });
    renderAt('/studio/review');
    expect(await screen.findByRole('heading', { name: 'Not available' })).toBeTruthy();
    expect(screen.getByText('This area is not available for the operator role.')).toBeTruthy();
  });

  it('opens the test-avatar panel from the navigation', async () => {
    stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, user('operator')),
      'GET /api/v1/ops/test-avatars': () => jsonResponse(200, { count: 0, next: null, previous: null, results: [] }),
    });
    renderAt('/studio/');
    const nav = await screen.findByRole('navigation', { name: 'Main' });
    fireEvent.click(within(nav).getByRole('link', { name: 'Test avatars' }));
    await waitFor(() => expect(window.location.pathname).toBe('/studio/operations/test-avatars'));
    expect(await screen.findByText('No test avatars yet.')).toBeTruthy();
  });
});
