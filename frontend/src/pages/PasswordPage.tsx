import { useRef, useState } from 'react';
import type { FormEvent } from 'react';
import { changePassword } from '../api/auth';
import { ApiError } from '../api/client';
import { ErrorSummary, Field } from '../components/Form';
import { SuccessNotice } from '../components/StatusViews';
import { useI18n } from '../i18n/I18nContext';
import { asApiError } from '../lib/useApi';

export function PasswordPage() {
  const { t } = useI18n();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [confirm, setConfirm] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [done, setDone] = useState(false);
  const [submitting, setSubmitting] = useState(false);
  const summaryRef = useRef<HTMLDivElement>(null);

  async function handleSubmit(event: FormEvent) {
    event.preventDefault();
    setDone(false);
    const fields: Record<string, string[]> = {};
    if (!current) fields.current_password = [t('form.required')];
    if (!next) fields.new_password = [t('form.required')];
    else if (next !== confirm) fields.confirm = [t('password.mismatch')];
    if (Object.keys(fields).length) {
      setError(new ApiError(400, 'invalid', t('form.correctErrors'), fields));
      return;
    }
    setSubmitting(true);
    try {
      await changePassword({ current_password: current, new_password: next });
      setError(null);
      setDone(true);
      setCurrent('');
      setNext('');
      setConfirm('');
    } catch (err) {
      setError(asApiError(err));
      summaryRef.current?.focus();
    } finally {
      setSubmitting(false);
    }
  }

  const labels = {
    current_password: t('password.current'),
    new_password: t('password.new'),
    confirm: t('password.confirm'),
  };
  return (
    <main className="page narrow">
      <h1>{t('password.title')}</h1>
      {done ? <SuccessNotice>{t('password.done')}</SuccessNotice> : null}
      <ErrorSummary ref={summaryRef} error={error} labels={labels} />
      <form noValidate onSubmit={(e) => void handleSubmit(e)} className="card form-card">
        <Field label={labels.current_password} errors={error?.fieldErrors('current_password')}>
          {(p) => (
            <input {...p} type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} />
          )}
        </Field>
        <Field label={labels.new_password} errors={error?.fieldErrors('new_password')}>
          {(p) => <input {...p} type="password" autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} />}
        </Field>
        <Field label={labels.confirm} errors={error?.fieldErrors('confirm')}>
          {(p) => (
            <input {...p} type="password" autoComplete="new-password" value={confirm} onChange={(e) => setConfirm(e.target.value)} />
          )}
        </Field>
        <button type="submit" className="button button-primary" disabled={submitting}>
          {t('password.submit')}
        </button>
      </form>
    </main>
  );
}
