import type { ApiError } from '../api/client';

export function LoadingState({ label = 'Loading…' }: { label?: string }) {
  return (
    <main className="page narrow">
      <p role="status" aria-live="polite" className="muted">
        <span className="spinner" aria-hidden="true" /> {label}
      </p>
    </main>
  );
}

export function ErrorState({ error, onRetry }: { error: ApiError; onRetry?: () => void }) {
  return (
    <main className="page narrow">
      <div role="alert" className="notice notice-error">
        <p className="notice-title">Something went wrong</p>
        <p>{error.message}</p>
        {error.requestId ? <p className="muted small">Request ID: {error.requestId}</p> : null}
      </div>
      {onRetry ? (
        <button type="button" className="button" onClick={onRetry}>
          Try again
        </button>
      ) : null}
    </main>
  );
}
