import { useState } from 'react';
import type { FormEvent } from 'react';
import { Link, useParams, useSearchParams } from 'react-router';
import { studio } from '../api/studio';
import type { CompareResult, PreviewCell, PreviewGrid } from '../api/studio';
import { ErrorState, LoadingState } from '../components/StatusViews';
import { TierBadge } from '../features/preview/PreviewGrid';
import { DiffTable } from '../features/templates/parts';
import { useI18n } from '../i18n/I18nContext';
import { useApi } from '../lib/useApi';

/** /templates/:id/compare?a=1&b=2 — spec diff and both grids, cell against cell. */
export function ComparePage() {
  const { id = '' } = useParams();
  const { t } = useI18n();
  const [params, setParams] = useSearchParams();
  const a = Number(params.get('a'));
  const b = Number(params.get('b'));
  const valid = Number.isInteger(a) && Number.isInteger(b) && a > 0 && b > 0;
  const revisions = useApi((signal) => studio.revisions(id, { signal }), [id]);
  const compare = useApi<CompareResult | null>(
    (signal) => (valid ? studio.compare(id, a, b, { signal }) : Promise.resolve(null)),
    [id, a, b, valid],
  );
  const [pickA, setPickA] = useState(valid ? String(a) : '');
  const [pickB, setPickB] = useState(valid ? String(b) : '');

  function submit(e: FormEvent) {
    e.preventDefault();
    if (pickA && pickB) setParams({ a: pickA, b: pickB });
  }

  const options = revisions.state.status === 'ready' ? revisions.state.data : [];
  return (
    <main className="page wide">
      <p>
        <Link to={`/templates/${id}`}>← {t('compare.back')}</Link>
      </p>
      <h1>{t('compare.title')}</h1>
      {revisions.state.status === 'error' ? <ErrorState inline error={revisions.state.error} onRetry={revisions.reload} /> : null}
      <form className="row" onSubmit={submit}>
        {(
          [
            ['a', pickA, setPickA, t('compare.revisionA')],
            ['b', pickB, setPickB, t('compare.revisionB')],
          ] as const
        ).map(([key, value, set, label]) => (
          <div className="field field-inline" key={key}>
            <label htmlFor={`compare-${key}`}>{label}</label>
            <select id={`compare-${key}`} value={value} onChange={(e) => set(e.target.value)}>
              <option value="">{t('compare.choose')}</option>
              {options.map((r) => (
                <option key={r.number} value={r.number}>
                  r{r.number}
                  {r.change_note ? ` — ${r.change_note}` : ''}
                </option>
              ))}
            </select>
          </div>
        ))}
        <button type="submit" className="button button-primary" disabled={!pickA || !pickB}>
          {t('history.compare')}
        </button>
      </form>

      {!valid ? <p className="muted">{t('compare.pick')}</p> : null}
      {valid && compare.state.status === 'loading' ? <LoadingState inline /> : null}
      {compare.state.status === 'error' ? <ErrorState inline error={compare.state.error} onRetry={compare.reload} /> : null}
      {compare.state.status === 'ready' && compare.state.data ? <CompareView result={compare.state.data} /> : null}
    </main>
  );
}

export function CompareView({ result }: { result: CompareResult }) {
  const { t } = useI18n();
  return (
    <>
      <section className="section" aria-labelledby="diff-title">
        <h2 id="diff-title">{t('compare.diffTitle')}</h2>
        <DiffTable
          diff={result.diff}
          oldLabel={t('compare.old', { n: result.a })}
          newLabel={t('compare.new', { n: result.b })}
          caption={t('compare.diffCaption', { a: result.a, b: result.b })}
        />
      </section>
      <section className="section" aria-labelledby="grids-title">
        <h2 id="grids-title">{t('compare.gridsTitle')}</h2>
        <SideBySide a={result.grids.a} b={result.grids.b} labelA={`r${result.a}`} labelB={`r${result.b}`} />
      </section>
    </>
  );
}

function cellOf(grid: PreviewGrid | null, avatar: string, seed: number): PreviewCell | null {
  if (!grid) return null;
  const r = grid.avatars.findIndex((x) => x.id === avatar);
  const c = grid.seeds.indexOf(seed);
  return r >= 0 && c >= 0 ? (grid.rows[r]?.[c] ?? null) : null;
}

function MiniCell({ cell, label }: { cell: PreviewCell | null; label: string }) {
  const { t } = useI18n();
  if (!cell) return <span className="muted small">{t('grid.noCell')}</span>;
  return (
    <span className="mini-cell">
      <TierBadge identity={cell.identity} />
      {cell.status === 'succeeded' && cell.image_url ? (
        <img src={cell.image_url} alt={label} loading="lazy" />
      ) : (
        <span className="small muted block">{cell.status === 'failed' ? t('grid.failed') : t('grid.pending')}</span>
      )}
    </span>
  );
}

/** Rows = avatars, columns = seeds (union of both grids); each cell shows A next to B. */
export function SideBySide({ a, b, labelA, labelB }: { a: PreviewGrid | null; b: PreviewGrid | null; labelA: string; labelB: string }) {
  const { t } = useI18n();
  if (!a && !b) return <p className="muted">{t('compare.noGrids')}</p>;
  const avatars = [...(a?.avatars ?? [])];
  for (const av of b?.avatars ?? []) if (!avatars.some((x) => x.id === av.id)) avatars.push(av);
  const seeds = [...new Set([...(a?.seeds ?? []), ...(b?.seeds ?? [])])];
  return (
    <>
      {!a ? <p className="muted small">{t('compare.noGridFor', { label: labelA })}</p> : null}
      {!b ? <p className="muted small">{t('compare.noGridFor', { label: labelB })}</p> : null}
      <div className="grid-scroll">
        <table className="preview-grid compare-grid" data-testid="compare-grid">
          <thead>
            <tr>
              <th scope="col">{t('grid.avatar')}</th>
              {seeds.map((seed) => (
                <th scope="col" key={seed}>
                  {t('grid.seed', { seed })}
                  <span className="block small muted">
                    {labelA} | {labelB}
                  </span>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {avatars.map((avatar) => (
              <tr key={avatar.id}>
                <th scope="row">{avatar.name}</th>
                {seeds.map((seed) => (
                  <td key={seed} className="pair">
                    <MiniCell cell={cellOf(a, avatar.id, seed)} label={t('compare.cellLabel', { rev: labelA, avatar: avatar.name, seed })} />
                    <MiniCell cell={cellOf(b, avatar.id, seed)} label={t('compare.cellLabel', { rev: labelB, avatar: avatar.name, seed })} />
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
