import { useRef, useState } from 'react';
import type { FormEvent } from 'react';
import { useNavigate, useParams } from 'react-router';
import { fetchInvitation } from '../api/auth';
import { ApiError } from '../api/client';
import { useAuth } from '../auth/AuthContext';
import { ErrorSummary, Field } from '../components/Form';
import { LoadingState } from '../components/StatusViews';
import { LanguageSwitcher, useI18n } from '../i18n/I18nContext';
import { asApiError, useApi } from '../lib/useApi';

/** /studio/invite/:token — look the invitation up, then set a display name and password. */
export function InvitePage() {
  const { token = '' } = useParams();
  const { t, formatDate } = useI18n();
  const { acceptInvitation } = useAuth();
  const navigate = useNavigate();
  const { state } = useApi((signal) => fetchInvitation(token, signal), [token]);
  const [displayName, setDisplayName] = useState('');
  const [password, setPassword] = useState('');
  const [confirm, setConfirm] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [submitting, setSubmitting] = useState(false);
  const summaryRef = useRef<HTMLDivElement>(null);

  async function handleSubmit(event: FormEvent) {
    event.preventDefault();
    const fields: Record<string, string[]> = {};
    if (!password) fields.password = [t('invite.passwordRequired')];
    else if (password !== confirm) fields.confirm = [t('password.mismatch')];
    if (Object.keys(fields).length) {
      setError(new ApiError(400, 'invalid', t('form.correctErrors'), fields));
      return;
    }
    setSubmitting(true);
    setError(null);
    try {
      await acceptInvitation(token, { password, display_name: displayName.trim() });
      navigate('/', { replace: true });
    } catch (err) {
      setSubmitting(false);
      setError(asApiError(err));
      summaryRef.current?.focus();
    }
  }

  const labels = {
    display_name: t('invite.displayName'),
    password: t('invite.password'),
    confirm: t('password.confirm'),
    token: t('invite.token'),
  };

  return (
    <main className="page auth-page">
      <div className="card auth-card">
        <div className="auth-top">
          <p className="brand brand-large">{t('app.name')}</p>
          <LanguageSwitcher />
        </div>
        <h1>{t('invite.title')}</h1>
        {state.status === 'loading' ? <LoadingState inline /> : null}
        {state.status === 'error' ? (
          <div role="alert" className="notice notice-error">
            <p className="notice-title">{t('invite.invalid')}</p>
            <p>{state.error.fieldErrors('token')[0] ?? state.error.message}</p>
          </div>
        ) : null}
        {state.status === 'ready' ? (
          <>
            <dl className="facts">
              <dt>{t('invite.email')}</dt>
              <dd data-testid="invite-email">{state.data.email}</dd>
              <dt>{t('invite.role')}</dt>
              <dd>{t(`role.${state.data.role}` as 'role.designer')}</dd>
              <dt>{t('invite.expires')}</dt>
              <dd>{formatDate(state.data.expires_at)}</dd>
            </dl>
            <ErrorSummary ref={summaryRef} error={error} labels={labels} />
            <form noValidate onSubmit={(e) => void handleSubmit(e)} aria-busy={submitting}>
              <Field label={labels.display_name} errors={error?.fieldErrors('display_name')}>
                {(p) => (
                  <input {...p} autoComplete="name" value={displayName} onChange={(e) => setDisplayName(e.target.value)} />
                )}
              </Field>
              <Field label={labels.password} errors={error?.fieldErrors('password')} hint={t('invite.passwordHint')}>
                {(p) => (
                  <input
                    {...p}
                    type="password"
                    autoComplete="new-password"
                    value={password}
                    onChange={(e) => setPassword(e.target.value)}
                  />
                )}
              </Field>
              <Field label={labels.confirm} errors={error?.fieldErrors('confirm')}>
                {(p) => (
                  <input
                    {...p}
                    type="password"
                    autoComplete="new-password"
                    value={confirm}
                    onChange={(e) => setConfirm(e.target.value)}
                  />
                )}
              </Field>
              <button type="submit" className="button button-primary button-block" disabled={submitting}>
                {submitting ? t('invite.submitting') : t('invite.submit')}
              </button>
            </form>
          </>
        ) : null}
      </div>
    </main>
  );
}
