import { Link } from 'react-router';
import { useI18n } from '../i18n/I18nContext';

export function NotFoundPage() {
  const { t } = useI18n();
  return (
    <main className="page narrow">
      <h1>{t('notFound.title')}</h1>
      <p>
        {t('notFound.text')} <Link to="/">{t('notFound.home')}</Link>.
      </p>
    </main>
  );
}
