import type { ReactNode } from 'react';
import { Navigate, useLocation } from 'react-router';
import type { User } from '../api/auth';
import { useAuth } from './AuthContext';
import { ErrorState, LoadingState } from '../components/StatusViews';

/**
 * Gate a page on GET /auth/me: show loading, show a non-401 error with a retry
 * button, redirect anonymous users to /login (remembering where they were
 * going), or render the page for the signed-in user.
 */
export function RequireAuth({ children }: { children: (user: User) => ReactNode }) {
  const { state, refresh } = useAuth();
  const location = useLocation();

  switch (state.status) {
    case 'loading':
      return <LoadingState />;
    case 'error':
      return <ErrorState error={state.error} onRetry={() => void refresh()} />;
    case 'anonymous':
      return <Navigate to="/login" replace state={{ from: location.pathname + location.search }} />;
    case 'authenticated':
      return <>{children(state.user)}</>;
  }
}
