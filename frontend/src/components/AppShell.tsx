import { useState } from 'react';
import type { ReactNode } from 'react';
import { Link, NavLink, useNavigate } from 'react-router';
import type { Role, User } from '../api/auth';
import { ApiError } from '../api/client';
import { useAuth } from '../auth/AuthContext';

export interface NavItem {
  to: string;
  label: string;
}

/** Role-aware navigation. Each role sees only its own work areas. */
export const NAV_BY_ROLE: Record<Role, NavItem[]> = {
  designer: [{ to: '/templates', label: 'My templates' }],
  reviewer: [{ to: '/review', label: 'Review queue' }],
  operator: [{ to: '/operations', label: 'Operations' }],
};

export function AppShell({ user, children }: { user: User; children: ReactNode }) {
  const { signOut } = useAuth();
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
      setError(err instanceof ApiError ? err.message : 'Sign out failed. Please try again.');
    }
  }

  return (
    <div className="shell">
      <header className="topbar">
        <Link to="/" className="brand">
          Portrait Studio
        </Link>
        <nav aria-label="Main" className="mainnav">
          <ul>
            {NAV_BY_ROLE[user.role].map((item) => (
              <li key={item.to}>
                <NavLink to={item.to}>{item.label}</NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <div className="userbox">
          <span className="muted">
            Signed in as <strong>{user.email}</strong>
          </span>
          <span className="role-badge" data-testid="role">
            {user.role}
          </span>
          <button type="button" className="button" onClick={() => void handleSignOut()} disabled={signingOut}>
            {signingOut ? 'Signing out…' : 'Sign out'}
          </button>
        </div>
      </header>
      {error ? (
        <div role="alert" className="notice notice-error notice-banner">
          {error}
        </div>
      ) : null}
      {children}
    </div>
  );
}
