import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { App } from '../App';
import { emptyResponse, errorBody, jsonResponse, stubFetch } from '../test/fetchStub';

const DANA = { id: 1, email: 'd@example.com', display_name: 'Dana', role: 'designer' };

function stubAnonymousBackend(loginResponse: () => Response) {
  let signedIn = false;
  return stubFetch({
    'GET /api/v1/auth/me': () =>
      signedIn ? jsonResponse(200, DANA) : jsonResponse(401, errorBody(401, 'not_authenticated', 'Sign in.')),
    'GET /api/v1/auth/csrf': () => {
      document.cookie = 'csrftoken=csrf-abc; path=/';
      return emptyResponse(204);
    },
    'POST /api/v1/auth/login': () => {
      const res = loginResponse();
      signedIn = res.ok;
      return res;
    },
  });
}

function fillAndSubmit(email: string, password: string) {
  fireEvent.change(screen.getByLabelText('Email'), { target: { value: email } });
  fireEvent.change(screen.getByLabelText('Password'), { target: { value: password } });
  fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
}

describe('LoginPage', () => {
  it('shows the API error message and per-field errors when login returns 400', async () => {
    const calls = stubAnonymousBackend(() =>
      jsonResponse(
        400,
        errorBody(400, 'invalid', 'We could not sign you in.', {
          email: ['Enter a valid email address.'],
          password: ['This password is too short.'],
        }),
      ),
    );
    window.history.pushState(null, '', '/studio/login');
    render(<App />);

    await screen.findByRole('button', { name: 'Sign in' });
    expect(screen.queryByRole('alert')).toBeNull();
    fillAndSubmit('not-an-email', 'pw');

    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('We could not sign you in.');
    expect(alert.textContent).toContain('Enter a valid email address.');
    expect(alert.textContent).toContain('This password is too short.');

    // Inline field errors are wired to their inputs for screen readers.
    const email = screen.getByLabelText('Email');
    expect(email.getAttribute('aria-invalid')).toBe('true');
    const describedBy = email.getAttribute('aria-describedby');
    expect(describedBy).toBeTruthy();
    expect(document.getElementById(describedBy!)?.textContent).toBe('Enter a valid email address.');
    expect(screen.getByLabelText('Password').getAttribute('aria-invalid')).toBe('true');

    // Focus moves to the first invalid field (an effect does it after the alert renders, so wait for it).
    await waitFor(() => expect(document.activeElement).toBe(email));

    // The login request carried the credentials, the CSRF header and cookies.
    const login = calls.find((c) => c.method === 'POST' && c.path === '/api/v1/auth/login');
    expect(login?.body).toEqual({ email: 'not-an-email', password: 'pw' });
    expect(login?.headers['x-csrftoken']).toBe('csrf-abc');
    expect(login?.credentials).toBe('same-origin');
    expect(window.location.pathname).toBe('/studio/login');
  });

  it('shows a non-field error message and focuses the alert', async () => {
    stubAnonymousBackend(() =>
      jsonResponse(400, errorBody(400, 'invalid_credentials', 'Email or password is incorrect.')),
    );
    window.history.pushState(null, '', '/studio/login');
    render(<App />);

    await screen.findByRole('button', { name: 'Sign in' });
    fillAndSubmit('d@example.com', 'wrong-password');

    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toBe('Email or password is incorrect.');
    expect(screen.getByLabelText('Email').getAttribute('aria-invalid')).toBeNull();
    // An effect moves focus after the alert renders: wait for it instead of racing it.
    await waitFor(() => expect(document.activeElement).toBe(alert));
  });

  it('validates empty fields without calling the API', async () => {
    const calls = stubAnonymousBackend(() => jsonResponse(200, DANA));
    window.history.pushState(null, '', '/studio/login');
    render(<App />);

    await screen.findByRole('button', { name: 'Sign in' });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));

    const alert = await screen.findByRole('alert');
    expect(within(alert).getByText(/Enter your email address/)).toBeTruthy();
    expect(document.activeElement).toBe(screen.getByLabelText('Email'));
    expect(calls.some((c) => c.path === '/api/v1/auth/login')).toBe(false);
  });

  it('navigates to /studio/ and shows the signed-in user after a successful login', async () => {
    stubAnonymousBackend(() => jsonResponse(200, DANA));
    window.history.pushState(null, '', '/studio/login');
    render(<App />);

    await screen.findByRole('button', { name: 'Sign in' });
    fillAndSubmit('d@example.com', 'correct horse');

    expect((await screen.findByTestId('role')).textContent).toBe('designer');
    expect(window.location.pathname).toBe('/studio/');
    expect(screen.getByText('d@example.com')).toBeTruthy();
  });
});
