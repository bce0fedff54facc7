import { Link } from 'react-router';
import type { User } from '../api/auth';
import { NAV_BY_ROLE } from '../components/AppShell';
import { useI18n } from '../i18n/I18nContext';

export function HomePage({ user }: { user: User }) {
  const { t } = useI18n();
  return (
    <main className="page">
      <h1>{t('home.welcome', { name: user.display_name || user.email })}</h1>
      <p className="lead">{t(`home.intro.${user.role}`)}</p>
      <ul className="link-list">
        {NAV_BY_ROLE[user.role].map((item) => (
          <li key={item.to}>
            <Link to={item.to}>{t(item.label)}</Link>
          </li>
        ))}
      </ul>
    </main>
  );
}
