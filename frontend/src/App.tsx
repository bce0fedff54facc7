import type { ReactNode } from 'react';
import { BrowserRouter, Navigate, Route, Routes } from 'react-router';
import type { Role, User } from './api/auth';
import { AuthProvider } from './auth/AuthContext';
import { RequireAuth } from './auth/RequireAuth';
import { AppShell } from './components/AppShell';
import { I18nProvider, useI18n } from './i18n/I18nContext';
import { ComparePage } from './pages/ComparePage';
import { HomePage } from './pages/HomePage';
import { InvitePage } from './pages/InvitePage';
import { LoginPage } from './pages/LoginPage';
import { NewTemplatePage } from './pages/NewTemplatePage';
import { NotFoundPage } from './pages/NotFoundPage';
import { InvitationsHelpPage, QueueDashboardPage, TestAvatarsPage } from './pages/OpsPages';
import { PasswordPage } from './pages/PasswordPage';
import { CatalogOrderPage, ReviewPage, ReviewQueuePage } from './pages/ReviewPages';
import { TemplatePage } from './pages/TemplatePage';
import { TemplatesPage } from './pages/TemplatesPage';

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

function NotAvailable({ role }: { role: Role }) {
  const { t } = useI18n();
  return (
    <main className="page">
      <h1>{t('notAvailable.title')}</h1>
      <p>{t('notAvailable.text', { role: t(`role.${role}`) })}</p>
    </main>
  );
}

function Protected({ roles, render }: ProtectedProps) {
  return (
    <RequireAuth>
      {(user) => (
        <AppShell user={user}>{roles && !roles.includes(user.role) ? <NotAvailable role={user.role} /> : render(user)}</AppShell>
      )}
    </RequireAuth>
  );
}

const AUTHORS: Role[] = ['designer', 'reviewer'];
const STUDIO: Role[] = ['designer', 'reviewer', 'operator'];

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route path="/invite/:token" element={<InvitePage />} />
      <Route path="/" element={<Protected render={(user) => <HomePage user={user} />} />} />
      <Route path="/account/password" element={<Protected render={() => <PasswordPage />} />} />
      <Route path="/templates" element={<Protected roles={STUDIO} render={(user) => <TemplatesPage user={user} />} />} />
      <Route path="/templates/new" element={<Protected roles={AUTHORS} render={() => <NewTemplatePage />} />} />
      <Route path="/templates/:id" element={<Protected roles={STUDIO} render={(user) => <TemplatePage user={user} />} />} />
      <Route path="/templates/:id/compare" element={<Protected roles={STUDIO} render={() => <ComparePage />} />} />
      <Route path="/review" element={<Protected roles={['reviewer']} render={() => <ReviewQueuePage />} />} />
      <Route path="/review/:id" element={<Protected roles={['reviewer']} render={() => <ReviewPage />} />} />
      <Route path="/catalog" element={<Protected roles={['reviewer']} render={() => <CatalogOrderPage />} />} />
      <Route path="/operations" element={<Navigate to="/operations/test-avatars" replace />} />
      <Route path="/operations/test-avatars" element={<Protected roles={['operator']} render={() => <TestAvatarsPage />} />} />
      <Route path="/operations/queue" element={<Protected roles={['operator']} render={() => <QueueDashboardPage />} />} />
      <Route path="/operations/invitations" element={<Protected roles={['operator']} render={() => <InvitationsHelpPage />} />} />
      <Route path="*" element={<NotFoundPage />} />
    </Routes>
  );
}

export function App() {
  normalizeEntryUrl();
  return (
    <I18nProvider>
      <BrowserRouter basename={ROUTER_BASENAME}>
        <AuthProvider>
          <AppRoutes />
        </AuthProvider>
      </BrowserRouter>
    </I18nProvider>
  );
}
