import { useState } from 'react';
import type { ReactNode } from 'react';
import { Link, NavLink, useNavigate } from 'react-router';
import type { Role, User } from '../api/auth';
import { ApiError } from '../api/client';
import { useAuth } from '../auth/AuthContext';
import { LanguageSwitcher, useI18n } from '../i18n/I18nContext';
import type { MessageKey } from '../i18n/I18nContext';

export interface NavItem {
  to: string;
  label: MessageKey;
}

/** Role-aware navigation. Each role sees only its own work areas. */
export const NAV_BY_ROLE: Record<Role, NavItem[]> = {
  designer: [{ to: '/templates', label: 'nav.templates' }],
  reviewer: [
    { to: '/review', label: 'nav.review' },
    { to: '/catalog', label: 'nav.catalog' },
    { to: '/templates', label: 'nav.templates' },
  ],
  operator: [
    { to: '/operations/test-avatars', label: 'nav.testAvatars' },
    { to: '/operations/queue', label: 'nav.dashboard' },
    { to: '/operations/invitations', label: 'nav.invitations' },
  ],
};

export function AppShell({ user, children }: { user: User; children: ReactNode }) {
  const { signOut } = useAuth();
  const { t } = useI18n();
  const navigate = useNavigate();
  const [signingOut, setSigningOut] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function handleSignOut() {
    setSigningOut(true);
    setError(null);
    try {
      await signOut();
      navigate('/login', { replace: true });
    } catch (err) {
      setSigningOut(false);
      setError(err instanceof ApiError ? err.message : t('shell.signOutFailed'));
    }
  }

  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        {t('shell.skip')}
      </a>
      <header className="topbar">
        <Link to="/" className="brand">
          {t('app.name')}
        </Link>
        <nav aria-label={t('shell.mainNav')} className="mainnav">
          <ul>
            {NAV_BY_ROLE[user.role].map((item) => (
              <li key={item.to}>
                <NavLink to={item.to}>{t(item.label)}</NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <div className="userbox">
          <span className="muted">
            {t('shell.signedInAs')} <strong>{user.email}</strong>
          </span>
          <span className="role-badge" data-testid="role" data-role={user.role}>
            {t(`role.${user.role}`)}
          </span>
          <Link to="/account/password" className="small">
            {t('shell.changePassword')}
          </Link>
          <LanguageSwitcher />
          <button type="button" className="button" onClick={() => void handleSignOut()} disabled={signingOut}>
            {signingOut ? t('shell.signingOut') : t('shell.signOut')}
          </button>
        </div>
      </header>
      {error ? (
        <div role="alert" className="notice notice-error notice-banner">
          {error}
        </div>
      ) : null}
      <div id="main" tabIndex={-1} className="main-region">
        {children}
      </div>
    </div>
  );
}
