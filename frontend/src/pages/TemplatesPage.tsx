import { useState } from 'react';
import { Link } from 'react-router';
import { studio } from '../api/studio';
import type { TemplateStatus, User } from '../api/types';
import { EmptyState, ErrorState, LoadingState } from '../components/StatusViews';
import { StatusBadge } from '../features/templates/parts';
import { useI18n } from '../i18n/I18nContext';
import { useApi } from '../lib/useApi';

const PAGE_SIZE = 50;
const STATUSES: TemplateStatus[] = ['draft', 'in_review', 'changes_requested', 'published', 'retired'];

/** "My templates": GET /api/studio/templates with status badges. */
export function TemplatesPage({ user }: { user: User }) {
  const { t, formatDate } = useI18n();
  const [page, setPage] = useState(1);
  const [status, setStatus] = useState<TemplateStatus | ''>('');
  const { state, reload } = useApi(
    (signal) => studio.templates({ page, page_size: PAGE_SIZE, ...(status ? { status } : {}) }, { signal }),
    [page, status],
  );
  const canCreate = user.role === 'designer' || user.role === 'reviewer';

  return (
    <main className="page wide">
      <div className="page-head">
        <h1>{t('templates.title')}</h1>
        {canCreate ? (
          <Link to="/templates/new" className="button button-primary">
            {t('templates.new')}
          </Link>
        ) : null}
      </div>
      <div className="field field-inline">
        <label htmlFor="status-filter">{t('templates.filter')}</label>
        <select
          id="status-filter"
          value={status}
          onChange={(e) => {
            setStatus(e.target.value as TemplateStatus | '');
            setPage(1);
          }}
        >
          <option value="">{t('templates.all')}</option>
          {STATUSES.map((s) => (
            <option key={s} value={s}>
              {t(`status.${s}`)}
            </option>
          ))}
        </select>
      </div>
      {state.status === 'loading' ? <LoadingState inline /> : null}
      {state.status === 'error' ? <ErrorState inline error={state.error} onRetry={reload} /> : null}
      {state.status === 'ready' && state.data.results.length === 0 ? (
        <EmptyState>{status ? t('templates.emptyFiltered') : t('templates.empty')}</EmptyState>
      ) : null}
      {state.status === 'ready' && state.data.results.length > 0 ? (
        <>
          <table className="data-table">
            <caption className="sr-only">{t('templates.title')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('meta.title')}</th>
                <th scope="col">{t('templates.status')}</th>
                <th scope="col">{t('meta.category')}</th>
                <th scope="col">{t('templates.revisions')}</th>
                <th scope="col">{t('templates.owner')}</th>
                <th scope="col">{t('templates.updated')}</th>
              </tr>
            </thead>
            <tbody>
              {state.data.results.map((tpl) => (
                <tr key={tpl.id}>
                  <th scope="row">
                    <Link to={`/templates/${tpl.id}`}>{tpl.title}</Link>
                  </th>
                  <td>
                    <StatusBadge template={tpl} />
                  </td>
                  <td>{t(`category.${tpl.category}`)}</td>
                  <td>
                    {t('templates.revisionSummary', {
                      latest: tpl.latest_revision_number ?? '—',
                      live: tpl.live_revision_number ?? '—',
                    })}
                  </td>
                  <td>{tpl.owner}</td>
                  <td>{formatDate(tpl.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <nav className="pager" aria-label={t('pager.label')}>
            <button type="button" className="button" disabled={!state.data.previous} onClick={() => setPage((p) => p - 1)}>
              {t('pager.previous')}
            </button>
            <span className="muted small">{t('pager.status', { page, count: state.data.count })}</span>
            <button type="button" className="button" disabled={!state.data.next} onClick={() => setPage((p) => p + 1)}>
              {t('pager.next')}
            </button>
          </nav>
        </>
      ) : null}
    </main>
  );
}
