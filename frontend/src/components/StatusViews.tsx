import type { ReactNode } from 'react';
import type { ApiError } from '../api/client';
import { useI18n } from '../i18n/I18nContext';

/** Wraps full-page states in <main>; `inline` states sit inside a page section. */
function Wrap({ inline, children }: { inline: boolean | undefined; children: ReactNode }) {
  return inline ? <div className="state-inline">{children}</div> : <main className="page narrow">{children}</main>;
}

export function LoadingState({ label, inline }: { label?: string; inline?: boolean }) {
  const { t } = useI18n();
  return (
    <Wrap inline={inline}>
      <p role="status" aria-live="polite" className="muted">
        <span className="spinner" aria-hidden="true" /> {label ?? t('state.loading')}
      </p>
    </Wrap>
  );
}

export function ErrorState({
  error,
  onRetry,
  inline,
  title,
}: {
  error: ApiError;
  onRetry?: () => void;
  inline?: boolean;
  title?: string;
}) {
  const { t } = useI18n();
  return (
    <Wrap inline={inline}>
      <div role="alert" className="notice notice-error">
        <p className="notice-title">{title ?? t('state.errorTitle')}</p>
        <p>{error.message}</p>
        {error.requestId ? (
          <p className="muted small">{t('state.requestId', { id: error.requestId })}</p>
        ) : null}
      </div>
      {onRetry ? (
        <button type="button" className="button" onClick={onRetry}>
          {t('state.retry')}
        </button>
      ) : null}
    </Wrap>
  );
}

export function EmptyState({ children }: { children: ReactNode }) {
  return <p className="empty muted">{children}</p>;
}

/** A transient success message for screen readers and sighted users. */
export function SuccessNotice({ children }: { children: ReactNode }) {
  return (
    <p role="status" className="notice notice-success">
      {children}
    </p>
  );
}
