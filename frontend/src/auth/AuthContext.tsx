import { createContext, useCallback, useContext, useEffect, useMemo, useState } from 'react';
import type { ReactNode } from 'react';
import { ApiError } from '../api/client';
import * as authApi from '../api/auth';
import type { Credentials, User } from '../api/auth';

export type AuthState =
  | { status: 'loading' }
  | { status: 'anonymous' }
  | { status: 'authenticated'; user: User }
  | { status: 'error'; error: ApiError };

export interface AuthContextValue {
  state: AuthState;
  /** Re-run GET /auth/me (used by the "Try again" button). */
  refresh: () => Promise<void>;
  /** POST /auth/login; throws ApiError on failure. */
  signIn: (credentials: Credentials) => Promise<User>;
  /** POST /auth/logout; throws ApiError on failure. */
  signOut: () => Promise<void>;
  /** POST /auth/invitations/{token}: creates the account and signs it in. */
  acceptInvitation: (token: string, body: { password: string; display_name?: string }) => Promise<User>;
}

const AuthContext = createContext<AuthContextValue | null>(null);

function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  return new ApiError(0, 'client_error', err instanceof Error ? err.message : 'Unexpected error.');
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState<AuthState>({ status: 'loading' });

  // GET /auth/me and store the outcome. The state starts as 'loading' and refresh() sets it
  // again before loading, so the effect below sets state only once the request settles.
  const load = useCallback(
    (signal?: AbortSignal): Promise<void> =>
      authApi.fetchMe(signal).then(
        (user) => {
          if (!signal?.aborted) setState({ status: 'authenticated', user });
        },
        (err: unknown) => {
          if (signal?.aborted) return;
          const error = asApiError(err);
          setState(error.status === 401 ? { status: 'anonymous' } : { status: 'error', error });
        },
      ),
    [],
  );

  useEffect(() => {
    const controller = new AbortController();
    void load(controller.signal);
    return () => controller.abort();
  }, [load]);

  const signIn = useCallback(async (credentials: Credentials) => {
    const user = await authApi.login(credentials);
    setState({ status: 'authenticated', user });
    return user;
  }, []);

  const signOut = useCallback(async () => {
    await authApi.logout();
    setState({ status: 'anonymous' });
  }, []);

  const acceptInvitation = useCallback(
    async (token: string, body: { password: string; display_name?: string }) => {
      const user = await authApi.acceptInvitation(token, body);
      setState({ status: 'authenticated', user });
      return user;
    },
    [],
  );

  const refresh = useCallback(() => {
    setState({ status: 'loading' });
    return load();
  }, [load]);

  const value = useMemo(
    () => ({ state, refresh, signIn, signOut, acceptInvitation }),
    [state, refresh, signIn, signOut, acceptInvitation],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthContextValue {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error('useAuth must be used inside <AuthProvider>.');
  return ctx;
}
