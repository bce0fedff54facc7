import { useEffect, useId, useRef, useState } from 'react';
import type { FormEvent, RefObject } from 'react';
import { Navigate, useLocation, useNavigate } from 'react-router';
import { ApiError } from '../api/client';
import { useAuth } from '../auth/AuthContext';
import { LoadingState } from '../components/StatusViews';
import { LanguageSwitcher, useI18n } from '../i18n/I18nContext';
import type { MessageKey } from '../i18n/I18nContext';

const FIELDS = ['email', 'password'] as const;
type Field = (typeof FIELDS)[number];
const FIELD_LABELS: Record<Field, MessageKey> = { email: 'login.email', password: 'login.password' };
const NON_FIELD_KEYS = new Set(['non_field_errors', '__all__', '']);

function redirectTarget(state: unknown): string {
  if (typeof state === 'object' && state !== null && 'from' in state) {
    const from = (state as { from: unknown }).from;
    // Only allow in-app paths (no protocol-relative or absolute URLs).
    if (typeof from === 'string' && from.startsWith('/') && !from.startsWith('//') && from !== '/login') {
      return from;
    }
  }
  return '/';
}

export function LoginPage() {
  const { state, signIn } = useAuth();
  const { t } = useI18n();
  const navigate = useNavigate();
  const location = useLocation();
  const target = redirectTarget(location.state);

  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [submitting, setSubmitting] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  // Bumped on each failed submit so focus moves even if the error is identical.
  const [errorVersion, setErrorVersion] = useState(0);

  const id = useId();
  const alertRef = useRef<HTMLDivElement>(null);
  const emailRef = useRef<HTMLInputElement>(null);
  const passwordRef = useRef<HTMLInputElement>(null);
  const inputRefs = { email: emailRef, password: passwordRef } satisfies Record<
    Field,
    RefObject<HTMLInputElement | null>
  >;

  // Re-run only when a new error arrives (errorVersion changes even if the error is identical).
  useEffect(() => {
    if (!error) return;
    const firstInvalid = FIELDS.find((f) => error.fieldErrors(f).length > 0);
    if (firstInvalid) (firstInvalid === 'email' ? emailRef : passwordRef).current?.focus();
    else alertRef.current?.focus();
  }, [error, errorVersion]);

  if (state.status === 'authenticated') return <Navigate to={target} replace />;
  if (state.status === 'loading') return <LoadingState />;

  function fail(err: ApiError) {
    setError(err);
    setErrorVersion((v) => v + 1);
  }

  async function handleSubmit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    if (submitting) return;
    const fields: Record<string, string[]> = {};
    if (!email.trim()) fields.email = [t('login.emailRequired')];
    if (!password) fields.password = [t('login.passwordRequired')];
    if (Object.keys(fields).length > 0) {
      fail(new ApiError(400, 'invalid', t('form.correctErrors'), fields));
      return;
    }
    setSubmitting(true);
    try {
      await signIn({ email: email.trim(), password });
      navigate(target, { replace: true });
    } catch (err) {
      setSubmitting(false);
      fail(
        err instanceof ApiError
          ? err
          : new ApiError(0, 'client_error', t('login.failed')),
      );
    }
  }

  const fieldId = (f: Field) => `${id}-${f}`;
  const errorId = (f: Field) => `${id}-${f}-error`;
  const otherFieldErrors = error
    ? Object.entries(error.fields).filter(([key]) => !(FIELDS as readonly string[]).includes(key))
    : [];

  return (
    <main className="page auth-page">
      <div className="card auth-card">
        <div className="auth-top">
          <p className="brand brand-large">{t('app.name')}</p>
          <LanguageSwitcher />
        </div>
        <h1>{t('login.title')}</h1>

        {error ? (
          <div
            ref={alertRef}
            role="alert"
            tabIndex={-1}
            className="notice notice-error"
            aria-labelledby={`${id}-alert-title`}
          >
            <p className="notice-title" id={`${id}-alert-title`}>
              {error.message}
            </p>
            {error.hasFieldErrors ? (
              <ul className="error-list">
                {FIELDS.flatMap((f) =>
                  error.fieldErrors(f).map((msg, i) => (
                    <li key={`${f}-${i}`}>
                      <a href={`#${fieldId(f)}`}>
                        {t(FIELD_LABELS[f])}: {msg}
                      </a>
                    </li>
                  )),
                )}
                {otherFieldErrors.flatMap(([key, msgs]) =>
                  msgs.map((msg, i) => (
                    <li key={`${key}-${i}`}>{NON_FIELD_KEYS.has(key) ? msg : `${key}: ${msg}`}</li>
                  )),
                )}
              </ul>
            ) : null}
          </div>
        ) : null}

        <form noValidate onSubmit={handleSubmit} aria-busy={submitting}>
          {FIELDS.map((f) => {
            const messages = error?.fieldErrors(f) ?? [];
            const invalid = messages.length > 0;
            return (
              <div key={f} className={invalid ? 'field field-invalid' : 'field'}>
                <label htmlFor={fieldId(f)}>{t(FIELD_LABELS[f])}</label>
                <input
                  ref={inputRefs[f]}
                  id={fieldId(f)}
                  name={f}
                  type={f === 'email' ? 'email' : 'password'}
                  autoComplete={f === 'email' ? 'username' : 'current-password'}
                  required
                  value={f === 'email' ? email : password}
                  onChange={(e) => (f === 'email' ? setEmail : setPassword)(e.target.value)}
                  aria-invalid={invalid || undefined}
                  aria-describedby={invalid ? errorId(f) : undefined}
                  disabled={submitting}
                />
                {invalid ? (
                  <p className="field-error" id={errorId(f)}>
                    {messages.join(' ')}
                  </p>
                ) : null}
              </div>
            );
          })}
          <button type="submit" className="button button-primary button-block" disabled={submitting}>
            {submitting ? t('login.submitting') : t('login.submit')}
          </button>
        </form>
      </div>
    </main>
  );
}
