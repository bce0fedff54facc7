import { useState } from 'react';
import type { KeyboardEvent } from 'react';
import { Link, useParams } from 'react-router';
import { ApiError } from '../api/client';
import { studio } from '../api/studio';
import type { ReviewState, Template } from '../api/types';
import { Field } from '../components/Form';
import { EmptyState, ErrorState, LoadingState, SuccessNotice } from '../components/StatusViews';
import { GridStatus, LivePreview, PreviewGridTable, gridDone } from '../features/preview/PreviewGrid';
import { DiffTable, SpecTable, StatusBadge, TemplateStatsPanel } from '../features/templates/parts';
import { useI18n } from '../i18n/I18nContext';
import { asApiError, useApi } from '../lib/useApi';

const STATES: ReviewState[] = ['open', 'approved', 'changes_requested'];

/** /review — the review queue (GET /api/studio/reviews?state=). */
export function ReviewQueuePage() {
  const { t, formatDate } = useI18n();
  const [state, setState] = useState<ReviewState>('open');
  const queue = useApi((signal) => studio.reviews({ state }, { signal }), [state]);
  return (
    <main className="page wide">
      <h1>{t('reviews.title')}</h1>
      <div className="field field-inline">
        <label htmlFor="review-state">{t('reviews.state')}</label>
        <select id="review-state" value={state} onChange={(e) => setState(e.target.value as ReviewState)}>
          {STATES.map((s) => (
            <option key={s} value={s}>
              {t(`reviewState.${s}`)}
            </option>
          ))}
        </select>
      </div>
      {queue.state.status === 'loading' ? <LoadingState inline /> : null}
      {queue.state.status === 'error' ? <ErrorState inline error={queue.state.error} onRetry={queue.reload} /> : null}
      {queue.state.status === 'ready' && queue.state.data.results.length === 0 ? <EmptyState>{t('reviews.empty')}</EmptyState> : null}
      {queue.state.status === 'ready' && queue.state.data.results.length > 0 ? (
        <table className="data-table">
          <caption className="sr-only">{t('reviews.title')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('reviews.template')}</th>
              <th scope="col">{t('history.revision')}</th>
              <th scope="col">{t('reviews.submittedBy')}</th>
              <th scope="col">{t('reviews.submittedAt')}</th>
              <th scope="col">{t('submit.note')}</th>
            </tr>
          </thead>
          <tbody>
            {queue.state.data.results.map((r) => (
              <tr key={r.id}>
                <th scope="row">
                  <Link to={`/review/${r.id}`}>{r.template_title}</Link>
                </th>
                <td>r{r.revision_number}</td>
                <td>{r.submitted_by}</td>
                <td>{formatDate(r.submitted_at)}</td>
                <td>{r.note || '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </main>
  );
}

/** /review/:id — spec, grid and diff against live; approve (publishes) or request changes. */
export function ReviewPage() {
  const { id = '' } = useParams();
  const reviewId = Number(id);
  const { t, formatDate } = useI18n();
  const review = useApi((signal) => studio.review(reviewId, { signal }), [reviewId]);
  const [comment, setComment] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Template | null>(null);

  if (review.state.status === 'loading') return <LoadingState />;
  if (review.state.status === 'error') return <ErrorState error={review.state.error} onRetry={review.reload} />;
  const r = review.state.data;

  async function decide(action: 'approve' | 'request') {
    if (action === 'request' && !comment.trim()) {
      setError(new ApiError(400, 'invalid', t('decision.commentRequired'), { comment: [t('decision.commentRequired')] }));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const tpl = action === 'approve' ? await studio.approve(r.id, comment) : await studio.requestChanges(r.id, comment);
      setResult(tpl);
      review.reload();
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="page wide">
      <p>
        <Link to="/review">← {t('reviews.title')}</Link>
      </p>
      <h1>{t('review.title', { title: r.template_title, n: r.revision_number })}</h1>
      <dl className="facts facts-inline">
        <dt>{t('reviews.state')}</dt>
        <dd data-testid="review-state">{t(`reviewState.${r.state}`)}</dd>
        <dt>{t('reviews.submittedBy')}</dt>
        <dd>{r.submitted_by}</dd>
        <dt>{t('reviews.submittedAt')}</dt>
        <dd>{formatDate(r.submitted_at)}</dd>
        {r.decided_by ? (
          <>
            <dt>{t('review.decidedBy')}</dt>
            <dd>{r.decided_by}</dd>
          </>
        ) : null}
      </dl>
      {r.note ? <blockquote>{r.note}</blockquote> : null}
      <p>
        <Link to={`/templates/${r.template}`}>{t('review.openTemplate')}</Link>
      </p>

      {r.state === 'open' ? (
        <section className="card section" aria-labelledby="decision-title">
          <h2 id="decision-title">{t('decision.title')}</h2>
          <Field label={t('decision.comment')} errors={error?.fieldErrors('comment')} hint={t('decision.hint')}>
            {(p) => <textarea {...p} rows={3} value={comment} onChange={(e) => setComment(e.target.value)} />}
          </Field>
          {error && !error.hasFieldErrors ? (
            <div role="alert" className="notice notice-error">
              {error.message}
            </div>
          ) : null}
          <div className="button-row">
            <button type="button" className="button button-primary" disabled={busy} onClick={() => void decide('approve')}>
              {t('decision.approve')}
            </button>
            <button type="button" className="button" disabled={busy} onClick={() => void decide('request')}>
              {t('decision.request')}
            </button>
          </div>
        </section>
      ) : null}
      {result ? (
        <SuccessNotice>
          {t('decision.done')} <StatusBadge template={result} />
        </SuccessNotice>
      ) : null}
      {r.comment ? (
        <section className="notice notice-info">
          <p className="notice-title">{t('decision.comment')}</p>
          <blockquote>{r.comment}</blockquote>
        </section>
      ) : null}

      <section className="section" aria-labelledby="grid-title">
        <h2 id="grid-title">{t('review.grid')}</h2>
        {gridDone(r.grid) ? (
          <>
            <GridStatus grid={r.grid} />
            <PreviewGridTable grid={r.grid} />
          </>
        ) : (
          <LivePreview initial={r.grid} />
        )}
      </section>

      <section className="section" aria-labelledby="live-diff-title">
        <h2 id="live-diff-title">{t('review.diffLive')}</h2>
        {r.diff_against_live === null ? (
          <p className="muted">{t('review.noLive')}</p>
        ) : (
          <DiffTable diff={r.diff_against_live} oldLabel={t('review.live')} newLabel={t('review.submitted')} caption={t('review.diffLive')} />
        )}
      </section>

      <section className="section" aria-labelledby="spec-title">
        <h2 id="spec-title">{t('review.spec')}</h2>
        <SpecTable spec={r.spec} caption={t('workspace.revisionCaption', { n: r.revision_number })} />
      </section>

      <TemplateStatsPanel templateId={r.template} />
    </main>
  );
}

/** /catalog — order published templates by drag and drop or with move up/down buttons. */
export function CatalogOrderPage() {
  const { t } = useI18n();
  const list = useApi((signal) => studio.templates({ status: 'published', page_size: 100 }, { signal }), []);
  const [order, setOrder] = useState<Template[] | null>(null);
  const [dragIndex, setDragIndex] = useState<number | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  const [announcement, setAnnouncement] = useState('');

  if (list.state.status === 'loading') return <LoadingState />;
  if (list.state.status === 'error') return <ErrorState error={list.state.error} onRetry={list.reload} />;
  const items =
    order ?? [...list.state.data.results].sort((x, y) => x.catalog_order - y.catalog_order || x.title.localeCompare(y.title));

  function move(from: number, to: number) {
    if (to < 0 || to >= items.length || from === to) return;
    const next = [...items];
    const [moved] = next.splice(from, 1);
    if (!moved) return;
    next.splice(to, 0, moved);
    setOrder(next);
    setSaved(false);
    setAnnouncement(t('catalog.moved', { title: moved.title, position: to + 1, total: next.length }));
  }

  function onKey(index: number, e: KeyboardEvent) {
    if (e.altKey && e.key === 'ArrowUp') {
      e.preventDefault();
      move(index, index - 1);
    } else if (e.altKey && e.key === 'ArrowDown') {
      e.preventDefault();
      move(index, index + 1);
    }
  }

  async function save() {
    setBusy(true);
    setError(null);
    try {
      await studio.catalogOrder(items.map((x) => x.id));
      setSaved(true);
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="page">
      <h1>{t('catalog.title')}</h1>
      <p className="hint" id="catalog-help">
        {t('catalog.help')}
      </p>
      {items.length === 0 ? (
        <EmptyState>{t('catalog.empty')}</EmptyState>
      ) : (
        <ol className="sortable" aria-describedby="catalog-help" data-testid="catalog-list">
          {items.map((tpl, i) => (
            <li
              key={tpl.id}
              draggable
              className={dragIndex === i ? 'dragging' : undefined}
              onDragStart={(e) => {
                setDragIndex(i);
                e.dataTransfer?.setData('text/plain', tpl.id);
                if (e.dataTransfer) e.dataTransfer.effectAllowed = 'move';
              }}
              onDragOver={(e) => {
                e.preventDefault();
                if (e.dataTransfer) e.dataTransfer.dropEffect = 'move';
              }}
              onDrop={(e) => {
                e.preventDefault();
                if (dragIndex !== null) move(dragIndex, i);
                setDragIndex(null);
              }}
              onDragEnd={() => setDragIndex(null)}
              onKeyDown={(e) => onKey(i, e)}
            >
              <span className="drag-handle" aria-hidden="true">
                ⋮⋮
              </span>
              <span className="sortable-title">
                {i + 1}. {tpl.title}
              </span>
              <span className="button-row">
                <button type="button" className="button button-small" disabled={i === 0} onClick={() => move(i, i - 1)} aria-label={t('catalog.up', { title: tpl.title })}>
                  ↑
                </button>
                <button
                  type="button"
                  className="button button-small"
                  disabled={i === items.length - 1}
                  onClick={() => move(i, i + 1)}
                  aria-label={t('catalog.down', { title: tpl.title })}
                >
                  ↓
                </button>
              </span>
            </li>
          ))}
        </ol>
      )}
      <p className="sr-only" aria-live="polite">
        {announcement}
      </p>
      {error ? (
        <div role="alert" className="notice notice-error">
          {error.message}
        </div>
      ) : null}
      {saved ? <SuccessNotice>{t('catalog.saved')}</SuccessNotice> : null}
      <button type="button" className="button button-primary" disabled={busy || items.length === 0} onClick={() => void save()}>
        {t('catalog.save')}
      </button>
    </main>
  );
}
