import type { DiffEntry, TemplateSpec } from '../../api/studio';
import { IDENTITIES, studio } from '../../api/studio';
import type { PanelLikeness, Template, TemplateEvent } from '../../api/types';
import { ErrorState, LoadingState } from '../../components/StatusViews';
import { useI18n } from '../../i18n/I18nContext';
import type { MessageKey } from '../../i18n/I18nContext';
import { useApi } from '../../lib/useApi';

export type BadgeKind = Template['status'];

/** The status shown for a template: "changes requested" when the latest review asked for them. */
export function badgeFor(template: Pick<Template, 'status' | 'latest_review'>): BadgeKind {
  if (
    template.latest_review?.state === 'changes_requested' &&
    (template.status === 'draft' || template.status === 'changes_requested')
  ) {
    return 'changes_requested';
  }
  return template.status;
}

export function StatusBadge({ template }: { template: Pick<Template, 'status' | 'latest_review'> }) {
  const { t } = useI18n();
  const kind = badgeFor(template);
  return (
    <span className={`status-badge status-${kind}`} data-status={kind}>
      {t(`status.${kind}`)}
    </span>
  );
}

export function formatValue(value: unknown): string {
  if (value === undefined) return '—';
  if (value === null) return 'null';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

export function DiffTable({ diff, oldLabel, newLabel, caption }: { diff: DiffEntry[]; oldLabel: string; newLabel: string; caption: string }) {
  const { t } = useI18n();
  if (diff.length === 0) return <p className="muted">{t('diff.none')}</p>;
  return (
    <table className="data-table diff-table" data-testid="diff-table">
      <caption>{caption}</caption>
      <thead>
        <tr>
          <th scope="col">{t('diff.field')}</th>
          <th scope="col">{oldLabel}</th>
          <th scope="col">{newLabel}</th>
        </tr>
      </thead>
      <tbody>
        {diff.map((entry) => (
          <tr key={entry.field}>
            <th scope="row">
              <code>{entry.field}</code>
            </th>
            <td className="diff-old">{formatValue(entry.old)}</td>
            <td className="diff-new">{formatValue(entry.new)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const SPEC_ORDER: (keyof TemplateSpec)[] = [
  'prompt',
  'negative_prompt',
  'base_model',
  'style_loras',
  'controls',
  'sampler',
  'steps',
  'guidance',
  'size',
  'aspect_ratio',
  'seeds',
  'candidates',
  'keep',
  'default_likeness',
  'face_refinement',
  'change_note',
];

/** A read-only view of a spec, one row per field. */
export function SpecTable({ spec, caption }: { spec: TemplateSpec; caption: string }) {
  const keys = [...SPEC_ORDER.filter((k) => k in spec), ...Object.keys(spec).filter((k) => !SPEC_ORDER.includes(k as keyof TemplateSpec))];
  return (
    <table className="data-table spec-table">
      <caption>{caption}</caption>
      <tbody>
        {keys.map((key) => (
          <tr key={key}>
            <th scope="row">
              <code>{key}</code>
            </th>
            <td>{formatValue((spec as unknown as Record<string, unknown>)[key])}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function TemplateStatsPanel({ templateId }: { templateId: string }) {
  const { t, formatNumber } = useI18n();
  const { state, reload } = useApi((signal) => studio.stats(templateId, { signal }), [templateId]);
  return (
    <section className="card section" aria-labelledby="stats-title">
      <h2 id="stats-title">{t('stats.title')}</h2>
      {state.status === 'loading' ? <LoadingState inline /> : null}
      {state.status === 'error' ? <ErrorState inline error={state.error} onRetry={reload} /> : null}
      {state.status === 'ready' ? (
        <dl className="stats">
          {(['generations', 'refinements', 'downloads', 'failures'] as const).map((key) => (
            <div key={key}>
              <dt>{t(`stats.${key}`)}</dt>
              <dd data-testid={`stat-${key}`}>{formatNumber(state.data[key])}</dd>
            </div>
          ))}
        </dl>
      ) : null}
      {state.status === 'ready' ? <PanelLikenessTable likeness={state.data.panel_likeness} /> : null}
    </section>
  );
}

/** Mean likeness per tier on the test panel, over the live revision's preview cells. */
export function PanelLikenessTable({ likeness }: { likeness: PanelLikeness | undefined }) {
  const { t, formatNumber } = useI18n();
  const rows = IDENTITIES.flatMap((identity) => {
    const entry = likeness?.[identity];
    return entry ? [{ identity, ...entry }] : [];
  });
  return (
    <div className="panel-likeness" data-testid="panel-likeness">
      <h3>{t('stats.likenessTitle')}</h3>
      {rows.length === 0 ? (
        <p className="muted small">{t('stats.likenessNone')}</p>
      ) : (
        <table className="data-table compact">
          <caption className="sr-only">{t('stats.likenessCaption')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('stats.tier')}</th>
              <th scope="col">{t('stats.meanLikeness')}</th>
              <th scope="col">{t('stats.cells')}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.identity} data-identity={row.identity}>
                <th scope="row">{t(`identity.${row.identity}`)}</th>
                <td data-testid={`likeness-${row.identity}`}>{row.mean.toFixed(2)}</td>
                <td>{formatNumber(row.cells)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function EventsList({ events }: { events: TemplateEvent[] }) {
  const { t, formatDate } = useI18n();
  if (events.length === 0) return <p className="muted">{t('events.empty')}</p>;
  const statusLabel = (s: string) => (s ? t(`status.${s}` as MessageKey) : '—');
  return (
    <ol className="events">
      {events.map((e) => (
        <li key={e.id}>
          <p>
            <strong>{e.actor}</strong> · {e.action}
            {e.revision_number !== null ? ` · r${e.revision_number}` : ''}
            {e.from_status || e.to_status ? ` · ${statusLabel(e.from_status)} → ${statusLabel(e.to_status)}` : ''}
            <span className="muted small"> · {formatDate(e.created_at)}</span>
          </p>
          {e.comment ? <blockquote>{e.comment}</blockquote> : null}
        </li>
      ))}
    </ol>
  );
}
