import { useState } from 'react';
import type { ApiError } from '../../api/client';
import { studio } from '../../api/studio';
import type { PreviewCell, PreviewGrid as Grid } from '../../api/studio';
import type { Identity } from '../../api/types';
import { ErrorState } from '../../components/StatusViews';
import { useI18n } from '../../i18n/I18nContext';
import { asApiError, usePolling } from '../../lib/useApi';

export const PREVIEW_POLL_MS = 1000;

export function gridDone(grid: Grid): boolean {
  return grid.progress.total > 0 ? grid.progress.done >= grid.progress.total : grid.complete;
}

/** The tier a cell was rendered with: "Instant", "LoRA" or "LoRA + adapter". */
export function TierBadge({ identity }: { identity: Identity | undefined }) {
  const { t } = useI18n();
  if (!identity) return null;
  return (
    <span className={`tier-badge tier-${identity}`} data-identity={identity} title={t(`identity.${identity}.hint`)}>
      {t(`identity.${identity}`)}
    </span>
  );
}

function CellView({ cell, label }: { cell: PreviewCell | null; label: string }) {
  const { t } = useI18n();
  if (!cell) return <span className="muted small">{t('grid.noCell')}</span>;
  return (
    <>
      <TierBadge identity={cell.identity} />
      <CellBody cell={cell} label={label} />
    </>
  );
}

function CellBody({ cell, label }: { cell: PreviewCell; label: string }) {
  const { t } = useI18n();
  if (cell.status === 'succeeded' && cell.image_url) {
    return (
      <figure className="cell-figure">
        <img src={cell.image_url} alt={label} loading="lazy" />
        {cell.likeness !== null ? (
          <figcaption className="small muted">{t('grid.likeness', { value: cell.likeness.toFixed(2) })}</figcaption>
        ) : null}
      </figure>
    );
  }
  if (cell.status === 'failed') {
    return (
      <p className="cell-failed small" data-status="failed">
        {t('grid.failed')}
        {cell.error ? `: ${cell.error}` : ''}
      </p>
    );
  }
  const step = cell.progress?.step ?? 0;
  const total = cell.progress?.total ?? 0;
  return (
    <div className="cell-pending" data-status="pending">
      <progress aria-label={t('grid.progressLabel', { label })} max={total || 1} value={total ? step : 0} />
      <span className="small muted">{total ? t('grid.rendering', { step, total }) : t('grid.pending')}</span>
    </div>
  );
}

/** rows = test avatars, columns = seeds. */
export function PreviewGridTable({ grid, caption }: { grid: Grid; caption?: string }) {
  const { t } = useI18n();
  return (
    <div className="grid-scroll">
      <table className="preview-grid" data-testid="preview-grid">
        {caption ? <caption>{caption}</caption> : null}
        <thead>
          <tr>
            <th scope="col">{t('grid.avatar')}</th>
            {grid.seeds.map((seed) => (
              <th scope="col" key={seed}>
                {t('grid.seed', { seed })}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {grid.avatars.map((avatar, r) => (
            <tr key={avatar.id}>
              <th scope="row">
                {avatar.name}
                <span className="small muted block">{[avatar.gender, avatar.age_band].filter(Boolean).join(' · ')}</span>
              </th>
              {grid.seeds.map((seed, c) => {
                const cell = grid.rows[r]?.[c] ?? null;
                return (
                  <td
                    key={seed}
                    data-cell={`${avatar.id}:${seed}`}
                    data-status={cell?.status ?? 'none'}
                    data-identity={cell?.identity}
                  >
                    <CellView cell={cell} label={t('grid.cellLabel', { avatar: avatar.name, seed })} />
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function GridStatus({ grid }: { grid: Grid }) {
  const { t } = useI18n();
  const done = gridDone(grid);
  return (
    <div className="grid-status">
      {!done && grid.queue && grid.queue.jobs_ahead !== null ? (
        <p className="notice notice-info" role="status" data-testid="queue-banner">
          {t('grid.jobsAhead', { n: grid.queue.jobs_ahead })}
        </p>
      ) : null}
      {grid.new_cells === 0 && done ? <p className="muted small">{t('grid.cached')}</p> : null}
      <p className="small" aria-live="polite">
        {t('grid.progress', { done: grid.progress.done, total: grid.progress.total })}
        {done ? ` — ${grid.complete ? t('grid.complete') : t('grid.finishedWithFailures')}` : ''}
      </p>
      <a href={studio.contactSheetUrl(grid.id)} className="small" download>
        {t('grid.contactSheet')}
      </a>
    </div>
  );
}

/** Shows a preview grid and polls GET /previews/{id} every second until every cell is done. */
export function LivePreview({
  initial,
  onUpdate,
  intervalMs = PREVIEW_POLL_MS,
}: {
  initial: Grid;
  onUpdate?: (grid: Grid) => void;
  intervalMs?: number;
}) {
  const { t } = useI18n();
  const [grid, setGrid] = useState<Grid>(initial);
  const [error, setError] = useState<ApiError | null>(null);
  const [previewId, setPreviewId] = useState(initial.id);
  if (previewId !== initial.id) {
    setPreviewId(initial.id);
    setGrid(initial);
  }
  const active = !gridDone(grid) && !error;

  usePolling(
    async (signal) => {
      try {
        const next = await studio.preview(grid.id, { signal });
        if (signal.aborted) return;
        setGrid(next);
        onUpdate?.(next);
      } catch (err) {
        if (!signal.aborted) setError(asApiError(err));
      }
    },
    intervalMs,
    active,
    [grid.id],
  );

  return (
    <section className="live-preview" aria-label={t('grid.title', { n: grid.revision })}>
      <GridStatus grid={grid} />
      {error ? <ErrorState inline error={error} onRetry={() => setError(null)} /> : null}
      <PreviewGridTable grid={grid} />
    </section>
  );
}
