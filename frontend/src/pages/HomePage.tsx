import { Link } from 'react-router';
import type { User } from '../api/auth';
import { NAV_BY_ROLE } from '../components/AppShell';

const ROLE_INTRO: Record<User['role'], string> = {
  designer: 'Create and edit portrait templates, then submit them for review.',
  reviewer: 'Review submitted templates and approve or request changes.',
  operator: 'Monitor rendering jobs and keep the studio running.',
};

export function HomePage({ user }: { user: User }) {
  const first = NAV_BY_ROLE[user.role][0];
  return (
    <main className="page">
      <h1>Welcome, {user.display_name || user.email}</h1>
      <p className="lead">{ROLE_INTRO[user.role]}</p>
      {first ? (
        <p>
          Start in <Link to={first.to}>{first.label.toLowerCase()}</Link>.
        </p>
      ) : null}
    </main>
  );
}
