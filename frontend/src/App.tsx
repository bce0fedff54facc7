import type { ReactNode } from 'react';
import { BrowserRouter, Route, Routes } from 'react-router';
import type { Role, User } from './api/auth';
import { AuthProvider } from './auth/AuthContext';
import { RequireAuth } from './auth/RequireAuth';
import { AppShell } from './components/AppShell';
import { ComingSoonPage } from './pages/ComingSoonPage';
import { HomePage } from './pages/HomePage';
import { LoginPage } from './pages/LoginPage';
import { NotFoundPage } from './pages/NotFoundPage';

/**
 * All client-side routes live under /studio/ (Django serves index.html there).
 * The trailing slash matters: with it, navigating to "/" yields /studio/
 * (the URL Django serves) rather than /studio.
 */
export const ROUTER_BASENAME = '/studio/';

/** Rewrite a bare /studio entry URL to /studio/ so the router matches it. */
export function normalizeEntryUrl(loc: Location = window.location, hist: History = window.history) {
  if (loc.pathname === ROUTER_BASENAME.slice(0, -1)) {
    hist.replaceState(hist.state, '', ROUTER_BASENAME + loc.search + loc.hash);
  }
}

interface ProtectedProps {
  /** Restrict to these roles; other signed-in users get a "not available" notice. */
  roles?: Role[];
  render: (user: User) => ReactNode;
}

function Protected({ roles, render }: ProtectedProps) {
  return (
    <RequireAuth>
      {(user) => (
        <AppShell user={user}>
          {roles && !roles.includes(user.role) ? (
            <main className="page">
              <h1>Not available</h1>
              <p>This area is not available for the {user.role} role.</p>
            </main>
          ) : (
            render(user)
          )}
        </AppShell>
      )}
    </RequireAuth>
  );
}

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route path="/" element={<Protected render={(user) => <HomePage user={user} />} />} />
      <Route
        path="/templates"
        element={<Protected roles={['designer']} render={() => <ComingSoonPage title="My templates" />} />}
      />
      <Route
        path="/review"
        element={<Protected roles={['reviewer']} render={() => <ComingSoonPage title="Review queue" />} />}
      />
      <Route
        path="/operations"
        element={<Protected roles={['operator']} render={() => <ComingSoonPage title="Operations" />} />}
      />
      <Route path="*" element={<NotFoundPage />} />
    </Routes>
  );
}

export function App() {
  normalizeEntryUrl();
  return (
    <BrowserRouter basename={ROUTER_BASENAME}>
      <AuthProvider>
        <AppRoutes />
      </AuthProvider>
    </BrowserRouter>
  );
}
