import { useRef, useState } from 'react';
import type { FormEvent } from 'react';
import { ApiError } from '../api/client';
import { AGE_BANDS, GENDERS, ops } from '../api/ops';
import type { DroppedPhoto, QueueDashboard } from '../api/ops';
import type { AgeBand, AvatarTier, LoraStatus, PanelGender, TestAvatar } from '../api/types';
import { CheckboxField, ErrorSummary, Field } from '../components/Form';
import { EmptyState, ErrorState, LoadingState, SuccessNotice } from '../components/StatusViews';
import { useI18n } from '../i18n/I18nContext';
import { asApiError, useApi, usePolling } from '../lib/useApi';

export const TEST_AVATAR_POLL_MS = 3000;
export const QUEUE_POLL_MS = 2000;
const IN_FLIGHT = new Set(['queued', 'preparing', 'training']);

/** The avatar's best ready tier; "none yet" while intake runs (or an older server omits it). */
function TierCell({ tier }: { tier: AvatarTier | null | undefined }) {
  const { t } = useI18n();
  const kind = tier ?? 'none';
  return (
    <span className={`tier-badge tier-${kind}`} data-tier={kind}>
      {t(`tier.${kind}`)}
    </span>
  );
}

function LoraStatusCell({ status }: { status: LoraStatus | undefined }) {
  const { t } = useI18n();
  if (!status) return <span className="muted">—</span>;
  return <span className={`lora-status lora-${status}`}>{t(`loraStatus.${status}`)}</span>;
}

/** /operations/test-avatars — the test-avatar panel with an upload form. */
export function TestAvatarsPage() {
  const { t, formatDate } = useI18n();
  const list = useApi((signal) => ops.testAvatars({ signal }), []);
  const [deleteError, setDeleteError] = useState<ApiError | null>(null);
  const avatars = list.state.status === 'ready' ? list.state.data.results : [];
  const training = avatars.some((a) => IN_FLIGHT.has(a.status));

  usePolling(
    async (signal) => {
      const next = await ops.testAvatars({ signal });
      if (!signal.aborted) list.setData(next);
    },
    TEST_AVATAR_POLL_MS,
    training,
    [],
    false,
  );

  async function remove(avatar: TestAvatar) {
    if (!window.confirm(t('panel.confirmDelete', { name: avatar.name }))) return;
    setDeleteError(null);
    try {
      await ops.deleteTestAvatar(avatar.id);
      list.reload();
    } catch (err) {
      setDeleteError(asApiError(err));
    }
  }

  return (
    <main className="page wide">
      <h1>{t('panel.title')}</h1>
      <p className="lead">{t('panel.intro')}</p>
      <p className="hint">{t('panel.tiersHelp')}</p>
      <section className="section" aria-labelledby="panel-list-title">
        <h2 id="panel-list-title">{t('panel.listTitle')}</h2>
        {list.state.status === 'loading' ? <LoadingState inline /> : null}
        {list.state.status === 'error' ? <ErrorState inline error={list.state.error} onRetry={list.reload} /> : null}
        {deleteError ? <ErrorState inline error={deleteError} /> : null}
        {list.state.status === 'ready' && avatars.length === 0 ? <EmptyState>{t('panel.empty')}</EmptyState> : null}
        {avatars.length > 0 ? (
          <table className="data-table">
            <thead>
              <tr>
                <th scope="col">{t('panel.name')}</th>
                <th scope="col">{t('panel.gender')}</th>
                <th scope="col">{t('panel.ageBand')}</th>
                <th scope="col">{t('panel.status')}</th>
                <th scope="col">{t('panel.tier')}</th>
                <th scope="col">{t('panel.lora')}</th>
                <th scope="col">{t('panel.photos')}</th>
                <th scope="col">{t('panel.created')}</th>
                <th scope="col">
                  <span className="sr-only">{t('panel.actions')}</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {avatars.map((a) => (
                <tr key={a.id} data-status={a.status}>
                  <th scope="row">{a.name}</th>
                  <td>{t(`panelGender.${a.panel_gender as PanelGender}`)}</td>
                  <td>{a.panel_age_band}</td>
                  <td>
                    <span className={`avatar-status avatar-${a.status}`}>{t(`avatarStatus.${a.status}`)}</span>
                    {a.status === 'training' || a.status === 'preparing' ? (
                      <progress
                        className="block"
                        aria-label={t('panel.progressLabel', { name: a.name })}
                        max={a.progress.total || 1}
                        value={a.progress.total ? a.progress.step : 0}
                      />
                    ) : null}
                    {a.queue && a.status === 'queued' ? (
                      <span className="small muted block">{t('panel.queue', { n: a.queue.position })}</span>
                    ) : null}
                    {a.failure ? <span className="small field-error block">{a.failure.reason}</span> : null}
                    {a.status === 'failed'
                      ? a.photo_issues.map((issue) => (
                          <span key={issue.field} className="small block">
                            {issue.field}: {issue.reason}
                          </span>
                        ))
                      : null}
                  </td>
                  <td data-testid={`tier-${a.id}`}>
                    <TierCell tier={a.tier} />
                  </td>
                  <td data-testid={`lora-${a.id}`}>
                    <LoraStatusCell status={a.lora_status} />
                  </td>
                  <td>{a.photo_count}</td>
                  <td>{formatDate(a.created_at)}</td>
                  <td>
                    <button type="button" className="button button-small button-danger" onClick={() => void remove(a)}>
                      {t('panel.delete', { name: a.name })}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </section>
      <TestAvatarForm onCreated={list.reload} />
    </main>
  );
}

function TestAvatarForm({ onCreated }: { onCreated: () => void }) {
  const { t } = useI18n();
  const [name, setName] = useState('');
  const [gender, setGender] = useState<PanelGender>('unspecified');
  const [ageBand, setAgeBand] = useState<AgeBand>('30-44');
  const [front, setFront] = useState<File | null>(null);
  const [photos, setPhotos] = useState<File[]>([]);
  const [declaration, setDeclaration] = useState('');
  const [confirmed, setConfirmed] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [dropped, setDropped] = useState<DroppedPhoto[]>([]);
  const [done, setDone] = useState('');
  const [busy, setBusy] = useState(false);
  const formRef = useRef<HTMLFormElement>(null);
  const summaryRef = useRef<HTMLDivElement>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setDone('');
    const fields: Record<string, string[]> = {};
    if (!name.trim()) fields.name = [t('form.required')];
    if (!front) fields.front_photo = [t('panel.frontRequired')];
    if (photos.length === 0) fields.photos = [t('panel.photosRequired')];
    if (!declaration.trim()) fields.rights_declaration = [t('form.required')];
    if (!confirmed) fields.confirm = [t('panel.confirmRequired')];
    if (Object.keys(fields).length || !front) {
      setError(new ApiError(400, 'invalid', t('form.correctErrors'), fields));
      requestAnimationFrame(() => summaryRef.current?.focus());
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const created = await ops.createTestAvatar({
        name: name.trim(),
        gender,
        age_band: ageBand,
        rights_declaration: declaration.trim(),
        front_photo: front,
        photos,
      });
      setDropped(created.photo_issues);
      setDone(t('panel.createdMessage', { name: created.name }));
      formRef.current?.reset();
      setName('');
      setFront(null);
      setPhotos([]);
      setDeclaration('');
      setConfirmed(false);
      onCreated();
    } catch (err) {
      setError(asApiError(err));
      requestAnimationFrame(() => summaryRef.current?.focus());
    } finally {
      setBusy(false);
    }
  }

  const photoErrors = error
    ? Object.entries(error.fields)
        .filter(([k]) => k === 'photos' || k.startsWith('photos.'))
        .flatMap(([k, msgs]) => {
          const index = Number(k.split('.')[1]);
          const file = Number.isInteger(index) ? photos[index]?.name : undefined;
          return msgs.map((m) => (file ? `${file}: ${m}` : m));
        })
    : [];
  const labels = {
    name: t('panel.name'),
    gender: t('panel.gender'),
    age_band: t('panel.ageBand'),
    front_photo: t('panel.front'),
    photos: t('panel.photos'),
    rights_declaration: t('panel.declaration'),
    confirm: t('panel.confirm'),
  };

  return (
    <section className="section card" aria-labelledby="panel-form-title">
      <h2 id="panel-form-title">{t('panel.addTitle')}</h2>
      <ErrorSummary ref={summaryRef} error={error} labels={labels} />
      {done ? <SuccessNotice>{done}</SuccessNotice> : null}
      {dropped.length > 0 ? (
        <div className="notice notice-info">
          <p className="notice-title">{t('panel.dropped')}</p>
          <ul>
            {dropped.map((d) => (
              <li key={d.field}>
                {d.field}: {d.reason}
              </li>
            ))}
          </ul>
        </div>
      ) : null}
      <form ref={formRef} noValidate onSubmit={(e) => void submit(e)} aria-busy={busy}>
        <div className="row">
          <Field label={labels.name} errors={error?.fieldErrors('name')}>
            {(p) => <input {...p} value={name} maxLength={80} onChange={(e) => setName(e.target.value)} />}
          </Field>
          <Field label={labels.gender} errors={error?.fieldErrors('gender')}>
            {(p) => (
              <select {...p} value={gender} onChange={(e) => setGender(e.target.value as PanelGender)}>
                {GENDERS.map((g) => (
                  <option key={g} value={g}>
                    {t(`panelGender.${g}`)}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label={labels.age_band} errors={error?.fieldErrors('age_band')}>
            {(p) => (
              <select {...p} value={ageBand} onChange={(e) => setAgeBand(e.target.value as AgeBand)}>
                {AGE_BANDS.map((a) => (
                  <option key={a} value={a}>
                    {a}
                  </option>
                ))}
              </select>
            )}
          </Field>
        </div>
        <Field label={labels.front_photo} errors={error?.fieldErrors('front_photo')}>
          {(p) => <input {...p} type="file" accept="image/jpeg,image/png,image/webp" onChange={(e) => setFront(e.target.files?.[0] ?? null)} />}
        </Field>
        <Field label={labels.photos} errors={photoErrors} hint={t('panel.photosHint', { n: photos.length })}>
          {(p) => (
            <input {...p} type="file" multiple accept="image/jpeg,image/png,image/webp" onChange={(e) => setPhotos(Array.from(e.target.files ?? []))} />
          )}
        </Field>
        <Field label={labels.rights_declaration} errors={error?.fieldErrors('rights_declaration')} hint={t('panel.declarationHint')}>
          {(p) => <textarea {...p} rows={3} maxLength={2000} value={declaration} onChange={(e) => setDeclaration(e.target.value)} />}
        </Field>
        <CheckboxField label={labels.confirm} checked={confirmed} onChange={setConfirmed} errors={error?.fieldErrors('confirm')} />
        <button type="submit" className="button button-primary" disabled={busy}>
          {busy ? t('state.uploading') : t('panel.submit')}
        </button>
      </form>
    </section>
  );
}

/** /operations/queue — polls GET /api/v1/ops/queue every 2 s. */
export function QueueDashboardPage() {
  const { t, formatDate, formatNumber } = useI18n();
  const [data, setData] = useState<QueueDashboard | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [updated, setUpdated] = useState<string | null>(null);

  usePolling(
    async (signal) => {
      try {
        const next = await ops.queue({ signal });
        if (signal.aborted) return;
        setData(next);
        setError(null);
        setUpdated(new Date().toISOString());
      } catch (err) {
        if (!signal.aborted) setError(asApiError(err));
      }
    },
    QUEUE_POLL_MS,
    true,
  );

  const unavailable = error && (error.status === 404 || error.status === 503);
  return (
    <main className="page wide">
      <h1>{t('queue.title')}</h1>
      {updated ? <p className="muted small">{t('queue.updated', { when: formatDate(updated) })}</p> : null}
      {unavailable ? (
        <div role="status" className="notice notice-warning" data-testid="queue-unavailable">
          <p className="notice-title">{t('queue.unavailable')}</p>
          <p>{t('queue.unavailableText', { status: error.status })}</p>
        </div>
      ) : null}
      {error && !unavailable ? <ErrorState inline error={error} /> : null}
      {!data && !error ? <LoadingState inline /> : null}
      {data && !unavailable ? (
        <>
          <p className="stat-big">
            {t('queue.throughput')}: <strong data-testid="throughput">{formatNumber(data.throughput_per_minute)}</strong>
          </p>
          <section className="section" aria-labelledby="lanes-title">
            <h2 id="lanes-title">{t('queue.lanes')}</h2>
            {data.lanes.length === 0 ? (
              <EmptyState>{t('queue.noLanes')}</EmptyState>
            ) : (
              <table className="data-table">
                <thead>
                  <tr>
                    <th scope="col">{t('queue.lane')}</th>
                    <th scope="col">{t('queue.class')}</th>
                    <th scope="col">{t('queue.queued')}</th>
                    <th scope="col">{t('queue.running')}</th>
                    <th scope="col">{t('queue.oldestWait')}</th>
                  </tr>
                </thead>
                <tbody>
                  {data.lanes.map((l) => (
                    <tr key={l.lane}>
                      <th scope="row">{l.lane}</th>
                      <td>{l.class ?? '—'}</td>
                      <td>{l.queued}</td>
                      <td>{l.running}</td>
                      <td>{l.oldest_wait_seconds === null ? '—' : t('queue.seconds', { n: Math.round(l.oldest_wait_seconds) })}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
          <section className="section" aria-labelledby="workers-title">
            <h2 id="workers-title">{t('queue.workers')}</h2>
            {data.workers.length === 0 ? (
              <EmptyState>{t('queue.noWorkers')}</EmptyState>
            ) : (
              <table className="data-table">
                <thead>
                  <tr>
                    <th scope="col">{t('queue.worker')}</th>
                    <th scope="col">{t('queue.lanes')}</th>
                    <th scope="col">{t('queue.currentJob')}</th>
                    <th scope="col">{t('queue.lastSeen')}</th>
                  </tr>
                </thead>
                <tbody>
                  {data.workers.map((w) => (
                    <tr key={w.name}>
                      <th scope="row">{w.name}</th>
                      <td>{Array.isArray(w.lanes) ? w.lanes.join(', ') : (w.lanes ?? w.lane ?? '—')}</td>
                      <td>{w.current_job ? <code>{w.current_job.slice(0, 8)}</code> : t('queue.idle')}</td>
                      <td>{formatDate(w.last_seen)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
          <section className="section" aria-labelledby="failures-title">
            <h2 id="failures-title">{t('queue.failures')}</h2>
            {data.recent_failures.length === 0 ? (
              <EmptyState>{t('queue.noFailures')}</EmptyState>
            ) : (
              <table className="data-table">
                <thead>
                  <tr>
                    <th scope="col">{t('queue.job')}</th>
                    <th scope="col">{t('queue.kind')}</th>
                    <th scope="col">{t('queue.error')}</th>
                    <th scope="col">{t('queue.finished')}</th>
                  </tr>
                </thead>
                <tbody>
                  {data.recent_failures.map((f) => (
                    <tr key={f.id}>
                      <th scope="row">
                        <code>{f.id.slice(0, 8)}</code>
                      </th>
                      <td>{f.kind}</td>
                      <td>
                        {f.error}
                        {f.message ? <span className="block small muted">{f.message}</span> : null}
                      </td>
                      <td>{formatDate(f.finished_at)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
        </>
      ) : null}
    </main>
  );
}

/** /operations/invitations — how to invite people (a management command today). */
export function InvitationsHelpPage() {
  const { t } = useI18n();
  return (
    <main className="page">
      <h1>{t('invitations.title')}</h1>
      <p>{t('invitations.text')}</p>
      <pre className="code-block">
        <code>python manage.py invite EMAIL --role designer|reviewer|operator</code>
      </pre>
      <p>{t('invitations.link')}</p>
      <pre className="code-block">
        <code>SITE_URL/studio/invite/&lt;token&gt;</code>
      </pre>
      <p className="muted">{t('invitations.ttl')}</p>
    </main>
  );
}
