import { useState } from 'react';
import type { FormEvent } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { ApiError } from '../api/client';
import { CATEGORIES, IDENTITIES, studio } from '../api/studio';
import type { PreviewGrid } from '../api/studio';
import type { Category, Identity, Revision, Template, User } from '../api/types';
import { ErrorSummary, Field } from '../components/Form';
import { EmptyState, ErrorState, LoadingState, SuccessNotice } from '../components/StatusViews';
import { TemplateEditor, parseTags } from '../features/editor/TemplateEditor';
import { LivePreview } from '../features/preview/PreviewGrid';
import { EventsList, SpecTable, StatusBadge, TemplateStatsPanel } from '../features/templates/parts';
import { useI18n } from '../i18n/I18nContext';
import { asApiError, useApi } from '../lib/useApi';

/** /templates/:id — the designer's workspace for one template (reviewers see it read-only). */
export function TemplatePage({ user }: { user: User }) {
  const { id = '' } = useParams();
  const { t, formatDate } = useI18n();
  const template = useApi((signal) => studio.template(id, { signal }), [id]);
  const revisions = useApi((signal) => studio.revisions(id, { signal }), [id]);
  const events = useApi((signal) => studio.templateEvents(id, { signal }), [id]);
  const [selected, setSelected] = useState<number | null>(null);

  if (template.state.status === 'loading') return <LoadingState />;
  if (template.state.status === 'error') return <ErrorState error={template.state.error} onRetry={template.reload} />;
  const tpl = template.state.data;
  const isOwner = tpl.owner === user.email;
  const editable = isOwner && tpl.status !== 'retired';
  const revs = revisions.state.status === 'ready' ? revisions.state.data : [];
  const latest = revs[0];
  const current = revs.find((r) => r.number === selected) ?? latest;

  const refreshAll = () => {
    template.reload();
    revisions.reload();
    events.reload();
  };

  return (
    <main className="page wide">
      <p>
        <Link to="/templates">← {t('templates.title')}</Link>
      </p>
      <div className="page-head">
        <h1>{tpl.title}</h1>
        <StatusBadge template={tpl} />
      </div>
      <dl className="facts facts-inline">
        <dt>{t('meta.category')}</dt>
        <dd>{t(`category.${tpl.category}`)}</dd>
        <dt>{t('templates.owner')}</dt>
        <dd>{tpl.owner}</dd>
        <dt>{t('templates.live')}</dt>
        <dd>{tpl.live_revision_number ?? '—'}</dd>
        <dt>{t('templates.latest')}</dt>
        <dd>{tpl.latest_revision_number ?? '—'}</dd>
        <dt>{t('meta.tags')}</dt>
        <dd>{tpl.tags?.length ? tpl.tags.join(', ') : '—'}</dd>
      </dl>

      <ReviewFeedback tpl={tpl} />

      <div className="two-col">
        <TemplateStatsPanel templateId={tpl.id} />
        <TransitionPanel tpl={tpl} user={user} onDone={(next) => { template.setData(next); events.reload(); }} />
      </div>

      {isOwner && tpl.status !== 'retired' ? <DetailsPanel tpl={tpl} onSaved={(next) => template.setData(next)} /> : null}

      <section className="section" aria-labelledby="editor-title">
        <h2 id="editor-title">{editable ? t('workspace.edit') : t('workspace.spec')}</h2>
        {revisions.state.status === 'loading' ? <LoadingState inline /> : null}
        {revisions.state.status === 'error' ? <ErrorState inline error={revisions.state.error} onRetry={revisions.reload} /> : null}
        {revisions.state.status === 'ready' && latest ? (
          editable ? (
            <RevisionEditor
              templateId={tpl.id}
              latest={latest}
              onSaved={(rev) => {
                setSelected(rev.number);
                refreshAll();
              }}
            />
          ) : (
            <SpecTable spec={latest.spec} caption={t('workspace.revisionCaption', { n: latest.number })} />
          )
        ) : null}
      </section>

      {current ? (
        <PreviewAndSubmit
          key={`${tpl.id}-${current.number}`}
          tpl={tpl}
          revision={current}
          revisions={revs}
          onSelect={setSelected}
          canAct={editable}
          onSubmitted={refreshAll}
        />
      ) : null}

      <RevisionHistory templateId={tpl.id} state={revisions.state} onRetry={revisions.reload} formatDate={formatDate} />

      <section className="section card" aria-labelledby="events-title">
        <h2 id="events-title">{t('events.title')}</h2>
        {events.state.status === 'loading' ? <LoadingState inline /> : null}
        {events.state.status === 'error' ? <ErrorState inline error={events.state.error} onRetry={events.reload} /> : null}
        {events.state.status === 'ready' ? <EventsList events={events.state.data.results} /> : null}
      </section>
    </main>
  );
}

function ReviewFeedback({ tpl }: { tpl: Template }) {
  const { t, formatDate } = useI18n();
  const review = tpl.latest_review;
  if (!review) return null;
  return (
    <section
      className={`notice ${review.state === 'changes_requested' ? 'notice-warning' : 'notice-info'}`}
      aria-labelledby="feedback-title"
      data-testid="review-feedback"
    >
      <h2 id="feedback-title" className="notice-title">
        {t('feedback.title', { n: review.revision_number })}: {t(`reviewState.${review.state}`)}
      </h2>
      {review.note ? <p>{t('feedback.note', { note: review.note })}</p> : null}
      {review.decided_by ? (
        <p>
          {t('feedback.decided', { who: review.decided_by, when: formatDate(review.decided_at) })}
          {review.comment ? ':' : ''}
        </p>
      ) : (
        <p>{t('feedback.waiting', { when: formatDate(review.submitted_at) })}</p>
      )}
      {review.comment ? <blockquote>{review.comment}</blockquote> : null}
    </section>
  );
}

function RevisionEditor({ templateId, latest, onSaved }: { templateId: string; latest: Revision; onSaved: (rev: Revision) => void }) {
  const schema = useApi((signal) => studio.specSchema({ signal }), []);
  if (schema.state.status === 'loading') return <LoadingState inline />;
  if (schema.state.status === 'error') return <ErrorState inline error={schema.state.error} onRetry={schema.reload} />;
  return (
    <TemplateEditor
      schema={schema.state.data}
      mode="revision"
      initialSpec={latest.spec}
      onSave={async ({ spec }) => {
        const rev = await studio.createRevision(templateId, spec);
        onSaved(rev);
      }}
    />
  );
}

function DetailsPanel({ tpl, onSaved }: { tpl: Template; onSaved: (t: Template) => void }) {
  const { t } = useI18n();
  const [title, setTitle] = useState(tpl.title);
  const [category, setCategory] = useState<Category>(tpl.category);
  const [tags, setTags] = useState((tpl.tags ?? []).join(', '));
  const [error, setError] = useState<ApiError | null>(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setDone(false);
    if (!title.trim()) {
      setError(new ApiError(400, 'invalid', t('form.correctErrors'), { title: [t('form.required')] }));
      return;
    }
    setBusy(true);
    try {
      onSaved(await studio.patchTemplate(tpl.id, { title: title.trim(), category, tags: parseTags(tags) }));
      setError(null);
      setDone(true);
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <details className="section card details-panel">
      <summary>{t('details.title')}</summary>
      <form noValidate onSubmit={(e) => void submit(e)}>
        <ErrorSummary error={error} labels={{ title: t('meta.title'), category: t('meta.category'), tags: t('meta.tags') }} />
        {done ? <SuccessNotice>{t('details.saved')}</SuccessNotice> : null}
        <div className="row">
          <Field label={t('meta.title')} errors={error?.fieldErrors('title')}>
            {(p) => <input {...p} value={title} onChange={(e) => setTitle(e.target.value)} />}
          </Field>
          <Field label={t('meta.category')} errors={error?.fieldErrors('category')}>
            {(p) => (
              <select {...p} value={category} onChange={(e) => setCategory(e.target.value as Category)}>
                {CATEGORIES.map((c) => (
                  <option key={c} value={c}>
                    {t(`category.${c}`)}
                  </option>
                ))}
              </select>
            )}
          </Field>
        </div>
        <Field label={t('meta.tags')} errors={error?.fieldErrors('tags')} hint={t('meta.tagsHint')}>
          {(p) => <input {...p} value={tags} onChange={(e) => setTags(e.target.value)} />}
        </Field>
        <button type="submit" className="button" disabled={busy}>
          {t('details.save')}
        </button>
      </form>
    </details>
  );
}

interface PreviewAndSubmitProps {
  tpl: Template;
  revision: Revision;
  revisions: Revision[];
  onSelect: (n: number) => void;
  canAct: boolean;
  onSubmitted: () => void;
}

function PreviewAndSubmit({ tpl, revision, revisions, onSelect, canAct, onSubmitted }: PreviewAndSubmitProps) {
  const { t } = useI18n();
  const [grid, setGrid] = useState<PreviewGrid | null>(null);
  const [previewError, setPreviewError] = useState<ApiError | null>(null);
  const [starting, setStarting] = useState(false);
  /** '' = each avatar's best available identity. */
  const [identity, setIdentity] = useState<Identity | ''>('');
  const [note, setNote] = useState('');
  const [submitError, setSubmitError] = useState<ApiError | null>(null);
  const [submitted, setSubmitted] = useState(false);
  const [submitting, setSubmitting] = useState(false);

  async function startPreview() {
    setStarting(true);
    setPreviewError(null);
    try {
      setGrid(await studio.createPreview(tpl.id, revision.number, identity ? { identity } : {}));
    } catch (err) {
      setPreviewError(asApiError(err));
    } finally {
      setStarting(false);
    }
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    setSubmitting(true);
    setSubmitError(null);
    try {
      await studio.submit(tpl.id, revision.number, note);
      setSubmitted(true);
      onSubmitted();
    } catch (err) {
      setSubmitError(asApiError(err));
    } finally {
      setSubmitting(false);
    }
  }

  return (
    <section className="section card" aria-labelledby="preview-title">
      <h2 id="preview-title">{t('preview.title')}</h2>
      <div className="row">
        <div className="field field-inline">
          <label htmlFor="preview-revision">{t('preview.revision')}</label>
          <select id="preview-revision" value={revision.number} onChange={(e) => onSelect(Number(e.target.value))}>
            {revisions.map((r) => (
              <option key={r.number} value={r.number}>
                {t('preview.revisionOption', { n: r.number, note: r.change_note || '—' })}
              </option>
            ))}
          </select>
        </div>
        {canAct ? (
          <div className="field field-inline">
            <label htmlFor="preview-identity">{t('preview.identity')}</label>
            <select
              id="preview-identity"
              value={identity}
              aria-describedby="preview-identity-hint"
              onChange={(e) => setIdentity(e.target.value as Identity | '')}
            >
              <option value="">{t('preview.identityBest')}</option>
              {IDENTITIES.map((i) => (
                <option key={i} value={i}>
                  {t(`identity.${i}.option`)}
                </option>
              ))}
            </select>
          </div>
        ) : null}
        {canAct ? (
          <button type="button" className="button button-primary" onClick={() => void startPreview()} disabled={starting}>
            {starting ? t('preview.starting') : t('preview.start')}
          </button>
        ) : null}
      </div>
      <p className="hint">{t('preview.help')}</p>
      {canAct ? (
        <p className="hint" id="preview-identity-hint">
          {t('preview.identityHint')}
        </p>
      ) : null}
      {previewError ? <ErrorState inline error={previewError} /> : null}
      {grid ? <LivePreview initial={grid} /> : <p className="muted small">{t('preview.none')}</p>}

      {canAct ? (
        <form noValidate onSubmit={(e) => void submit(e)} className="submit-form">
          <h3>{t('submit.title')}</h3>
          <Field label={t('submit.note')} errors={submitError?.fieldErrors('note')} hint={t('submit.hint')}>
            {(p) => <textarea {...p} rows={2} value={note} onChange={(e) => setNote(e.target.value)} maxLength={4000} />}
          </Field>
          {submitError && !submitError.hasFieldErrors ? (
            <div role="alert" className="notice notice-error">
              {submitError.message}
            </div>
          ) : null}
          {submitted ? <SuccessNotice>{t('submit.done', { n: revision.number })}</SuccessNotice> : null}
          <button type="submit" className="button button-primary" disabled={submitting}>
            {t('submit.button')}
          </button>
        </form>
      ) : null}
    </section>
  );
}

function RevisionHistory({
  templateId,
  state,
  onRetry,
  formatDate,
}: {
  templateId: string;
  state: ReturnType<typeof useApi<Revision[]>>['state'];
  onRetry: () => void;
  formatDate: (iso: string) => string;
}) {
  const { t } = useI18n();
  const navigate = useNavigate();
  const [picked, setPicked] = useState<number[]>([]);
  const toggle = (n: number, on: boolean) =>
    setPicked((prev) => (on ? [...prev.filter((x) => x !== n), n].slice(-2) : prev.filter((x) => x !== n)));
  const [a, b] = [...picked].sort((x, y) => x - y);

  return (
    <section className="section card" aria-labelledby="history-title">
      <h2 id="history-title">{t('history.title')}</h2>
      {state.status === 'loading' ? <LoadingState inline /> : null}
      {state.status === 'error' ? <ErrorState inline error={state.error} onRetry={onRetry} /> : null}
      {state.status === 'ready' && state.data.length === 0 ? <EmptyState>{t('history.empty')}</EmptyState> : null}
      {state.status === 'ready' && state.data.length > 0 ? (
        <>
          <p className="hint">{t('history.help')}</p>
          <table className="data-table">
            <thead>
              <tr>
                <th scope="col">{t('history.pick')}</th>
                <th scope="col">{t('history.revision')}</th>
                <th scope="col">{t('spec.changeNote')}</th>
                <th scope="col">{t('history.by')}</th>
                <th scope="col">{t('history.when')}</th>
              </tr>
            </thead>
            <tbody>
              {state.data.map((r) => (
                <tr key={r.number}>
                  <td>
                    <input
                      type="checkbox"
                      aria-label={t('history.pickLabel', { n: r.number })}
                      checked={picked.includes(r.number)}
                      onChange={(e) => toggle(r.number, e.target.checked)}
                    />
                  </td>
                  <th scope="row">r{r.number}</th>
                  <td>{r.change_note || '—'}</td>
                  <td>{r.created_by}</td>
                  <td>{formatDate(r.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <button
            type="button"
            className="button"
            disabled={a === undefined || b === undefined}
            onClick={() => navigate(`/templates/${templateId}/compare?a=${a}&b=${b}`)}
          >
            {t('history.compare')}
          </button>
        </>
      ) : null}
    </section>
  );
}

function TransitionPanel({ tpl, user, onDone }: { tpl: Template; user: User; onDone: (t: Template) => void }) {
  const { t } = useI18n();
  const [comment, setComment] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const allowed = user.role === 'reviewer' || tpl.owner === user.email;
  if (!allowed || tpl.status === 'retired') return null;

  async function run(action: 'unpublish' | 'retire') {
    if (action === 'retire' && !window.confirm(t('transition.confirmRetire'))) return;
    setBusy(true);
    setError(null);
    try {
      onDone(await (action === 'retire' ? studio.retire(tpl.id, comment) : studio.unpublish(tpl.id, comment)));
      setComment('');
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card section" aria-labelledby="transition-title">
      <h2 id="transition-title">{t('transition.title')}</h2>
      <Field label={t('transition.comment')} errors={error?.fieldErrors('comment')}>
        {(p) => <textarea {...p} rows={2} value={comment} onChange={(e) => setComment(e.target.value)} />}
      </Field>
      {error && !error.hasFieldErrors ? (
        <p role="alert" className="field-error">
          {error.message}
        </p>
      ) : null}
      <div className="button-row">
        {tpl.status === 'published' ? (
          <button type="button" className="button" disabled={busy} onClick={() => void run('unpublish')}>
            {t('transition.unpublish')}
          </button>
        ) : null}
        <button type="button" className="button button-danger" disabled={busy} onClick={() => void run('retire')}>
          {t('transition.retire')}
        </button>
      </div>
    </section>
  );
}
