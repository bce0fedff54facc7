import { useEffect, useId, useRef, useState } from 'react';
import type { KeyboardEvent, PointerEvent as ReactPointerEvent } from 'react';
import type { ApiError } from '../../api/client';
import { studio } from '../../api/studio';
import type { PosePayload } from '../../api/studio';
import type { Asset } from '../../api/types';
import { ErrorSummary } from '../../components/Form';
import { useI18n } from '../../i18n/I18nContext';
import type { MessageKey } from '../../i18n/I18nContext';
import { asApiError } from '../../lib/useApi';
import { COLORS, KEYPOINT_NAMES, LIMBS, NUM_KEYPOINTS, clampPoint, defaultKeypoints, limbColor, rgb } from './openpose';
import type { Point } from './openpose';

const DEFAULT_WIDTH = 512;
const DEFAULT_HEIGHT = 768;

export interface PoseEditorProps {
  /** Called with the stored pose asset after "Save pose". */
  onSaved: (asset: Asset) => void;
  /** Called after the reference photo was uploaded as a reference asset. */
  onReferenceUploaded?: (asset: Asset) => void;
  disabled?: boolean;
}

export const kpKey = (i: number) => `pose.kp.${KEYPOINT_NAMES[i]}` as MessageKey;

/**
 * An OpenPose (COCO-18) skeleton editor. Points are dragged with the mouse (pointer events)
 * or focused and moved with the arrow keys (Shift = 10 px). Limbs can be switched off and
 * extra limbs added; a keypoint can be marked missing. The optional reference photo is a local
 * file shown under the skeleton; it is uploaded only by "Upload reference photo".
 */
export function PoseEditor({ onSaved, onReferenceUploaded, disabled }: PoseEditorProps) {
  const { t } = useI18n();
  const id = useId();
  const [width, setWidth] = useState(DEFAULT_WIDTH);
  const [height, setHeight] = useState(DEFAULT_HEIGHT);
  const [sizeText, setSizeText] = useState({ width: String(DEFAULT_WIDTH), height: String(DEFAULT_HEIGHT) });
  const [points, setPoints] = useState<(Point | null)[]>(() => defaultKeypoints(DEFAULT_WIDTH, DEFAULT_HEIGHT));
  const lastPositions = useRef<Point[]>(defaultKeypoints(DEFAULT_WIDTH, DEFAULT_HEIGHT));
  const [standardOn, setStandardOn] = useState<boolean[]>(() => LIMBS.map(() => true));
  const [customLimbs, setCustomLimbs] = useState<[number, number][]>([]);
  const [newLimb, setNewLimb] = useState<[number, number]>([0, 1]);
  const [dragging, setDragging] = useState<number | null>(null);
  const [announcement, setAnnouncement] = useState('');
  const [photo, setPhoto] = useState<{ file: File; url: string | null } | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState<'save' | 'upload' | null>(null);
  const [message, setMessage] = useState('');
  const svgRef = useRef<SVGSVGElement>(null);

  // Revoke the local photo URL when it is replaced or the editor closes.
  useEffect(() => {
    const url = photo?.url;
    return () => {
      if (url) URL.revokeObjectURL(url);
    };
  }, [photo]);

  const limbs: [number, number][] = [
    ...LIMBS.filter((_, i) => standardOn[i]).map(([a, b]) => [a, b] as [number, number]),
    ...customLimbs,
  ];
  const limbsChanged = customLimbs.length > 0 || standardOn.some((on) => !on);

  function payload(): PosePayload {
    return {
      pose: {
        width,
        height,
        keypoints: points.map((p) => (p ? [p[0], p[1]] : null)),
        ...(limbsChanged ? { limbs } : {}),
      },
    };
  }

  function announce(i: number, p: Point) {
    setAnnouncement(t('pose.position', { name: t(kpKey(i)), x: p[0], y: p[1] }));
  }

  function movePoint(i: number, p: Point) {
    const clamped = clampPoint(p, width, height);
    lastPositions.current[i] = clamped;
    setPoints((prev) => prev.map((q, j) => (j === i ? clamped : q)));
    return clamped;
  }

  function toSvgPoint(clientX: number, clientY: number): Point {
    const rect = svgRef.current?.getBoundingClientRect();
    if (!rect || rect.width === 0 || rect.height === 0) return [clientX, clientY];
    return [((clientX - rect.left) * width) / rect.width, ((clientY - rect.top) * height) / rect.height];
  }

  function onPointerDown(i: number, e: ReactPointerEvent<SVGCircleElement>) {
    if (disabled) return;
    e.preventDefault();
    (e.currentTarget as Element).setPointerCapture?.(e.pointerId);
    (e.currentTarget as SVGCircleElement).focus();
    setDragging(i);
  }

  function onPointerMove(e: ReactPointerEvent<SVGElement>) {
    if (dragging === null) return;
    movePoint(dragging, toSvgPoint(e.clientX, e.clientY));
  }

  function onPointerUp() {
    if (dragging === null) return;
    const p = points[dragging];
    if (p) announce(dragging, p);
    setDragging(null);
  }

  function onKeyDown(i: number, e: KeyboardEvent<SVGCircleElement>) {
    const step = e.shiftKey ? 10 : 1;
    const delta: Record<string, Point> = {
      ArrowLeft: [-step, 0],
      ArrowRight: [step, 0],
      ArrowUp: [0, -step],
      ArrowDown: [0, step],
    };
    const d = delta[e.key];
    const p = points[i];
    if (!d || !p || disabled) return;
    e.preventDefault();
    announce(i, movePoint(i, [p[0] + d[0], p[1] + d[1]]));
  }

  function toggleMissing(i: number, missing: boolean) {
    setPoints((prev) =>
      prev.map((q, j) => {
        if (j !== i) return q;
        return missing ? null : clampPoint(lastPositions.current[i] ?? [width / 2, height / 2], width, height);
      }),
    );
  }

  function applySize(which: 'width' | 'height', text: string) {
    setSizeText((s) => ({ ...s, [which]: text }));
    const n = Number(text);
    if (!Number.isInteger(n) || n < 64 || n > 2048) return;
    const nextW = which === 'width' ? n : width;
    const nextH = which === 'height' ? n : height;
    const sx = nextW / width;
    const sy = nextH / height;
    const scale = (p: Point) => clampPoint([p[0] * sx, p[1] * sy], nextW, nextH);
    setPoints((prev) => prev.map((p) => (p ? scale(p) : null)));
    lastPositions.current = lastPositions.current.map(scale);
    setWidth(nextW);
    setHeight(nextH);
  }

  function addLimb() {
    const [a, b] = newLimb;
    if (a === b || limbs.some(([x, y]) => (x === a && y === b) || (x === b && y === a))) {
      setMessage(t('pose.limbExists'));
      return;
    }
    const standard = LIMBS.findIndex(([x, y]) => (x === a && y === b) || (x === b && y === a));
    if (standard >= 0) setStandardOn((prev) => prev.map((on, i) => (i === standard ? true : on)));
    else setCustomLimbs((prev) => [...prev, [a, b]]);
    setMessage(t('pose.limbAdded', { a: t(kpKey(a)), b: t(kpKey(b)) }));
  }

  async function save() {
    setBusy('save');
    setError(null);
    setMessage('');
    try {
      const asset = await studio.createPose(payload());
      setMessage(t('pose.saved'));
      onSaved(asset);
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(null);
    }
  }

  async function uploadReference() {
    if (!photo) return;
    setBusy('upload');
    setError(null);
    try {
      const asset = await studio.uploadAsset(photo.file, 'reference');
      setMessage(t('pose.referenceUploaded'));
      onReferenceUploaded?.(asset);
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(null);
    }
  }

  const errorLabels: Record<string, string> = {
    'pose.width': t('pose.width'),
    'pose.height': t('pose.height'),
    ...Object.fromEntries(KEYPOINT_NAMES.map((_, i) => [`pose.keypoints.${i}`, t(kpKey(i))])),
  };
  const limbLabel = (a: number, b: number) => t('pose.limb', { a: t(kpKey(a)), b: t(kpKey(b)) });
  const stroke = Math.max(2, Math.round(Math.min(width, height) / 128));
  const radius = Math.max(5, Math.round(Math.min(width, height) / 64));

  return (
    <div className="pose-editor" aria-labelledby={`${id}-title`} role="group">
      <h4 id={`${id}-title`}>{t('pose.title')}</h4>
      <p className="hint" id={`${id}-help`}>
        {t('pose.help')}
      </p>
      <div className="pose-layout">
        <div className="pose-canvas">
          <svg
            ref={svgRef}
            viewBox={`0 0 ${width} ${height}`}
            role="group"
            aria-label={t('pose.canvas')}
            onPointerMove={onPointerMove}
            onPointerUp={onPointerUp}
            onPointerCancel={onPointerUp}
            style={{ aspectRatio: `${width} / ${height}` }}
            data-testid="pose-canvas"
          >
            <rect x={0} y={0} width={width} height={height} fill="#000" />
            {photo?.url ? (
              <image href={photo.url} x={0} y={0} width={width} height={height} preserveAspectRatio="xMidYMid slice" opacity={0.55} />
            ) : null}
            {limbs.map(([a, b]) => {
              const pa = points[a];
              const pb = points[b];
              if (!pa || !pb) return null;
              return (
                <line
                  key={`${a}-${b}`}
                  x1={pa[0]}
                  y1={pa[1]}
                  x2={pb[0]}
                  y2={pb[1]}
                  stroke={limbColor(a, b)}
                  strokeOpacity={0.6}
                  strokeWidth={stroke * 2}
                  strokeLinecap="round"
                  data-limb={`${a}-${b}`}
                />
              );
            })}
            {points.map((p, i) =>
              p ? (
                <circle
                  key={i}
                  cx={p[0]}
                  cy={p[1]}
                  r={radius}
                  fill={rgb(COLORS[i]!)}
                  stroke={dragging === i ? '#fff' : 'none'}
                  strokeWidth={2}
                  tabIndex={disabled ? -1 : 0}
                  role="button"
                  aria-roledescription={t('pose.keypointRole')}
                  aria-label={t(kpKey(i))}
                  aria-describedby={`${id}-help`}
                  data-keypoint={i}
                  className="pose-point"
                  onPointerDown={(e) => onPointerDown(i, e)}
                  onKeyDown={(e) => onKeyDown(i, e)}
                />
              ) : null,
            )}
          </svg>
          <p className="sr-only" aria-live="polite">
            {announcement}
          </p>
        </div>
        <div className="pose-controls">
          <div className="row">
            <div className="field">
              <label htmlFor={`${id}-w`}>{t('pose.width')}</label>
              <input id={`${id}-w`} type="number" min={64} max={2048} step={8} value={sizeText.width} onChange={(e) => applySize('width', e.target.value)} />
            </div>
            <div className="field">
              <label htmlFor={`${id}-h`}>{t('pose.height')}</label>
              <input id={`${id}-h`} type="number" min={64} max={2048} step={8} value={sizeText.height} onChange={(e) => applySize('height', e.target.value)} />
            </div>
          </div>
          <div className="field">
            <label htmlFor={`${id}-photo`}>{t('pose.referencePhoto')}</label>
            <input
              id={`${id}-photo`}
              type="file"
              accept="image/png,image/jpeg,image/webp"
              aria-describedby={`${id}-photo-hint`}
              onChange={(e) => {
                const file = e.target.files?.[0];
                const url = file && typeof URL.createObjectURL === 'function' ? URL.createObjectURL(file) : null;
                setPhoto(file ? { file, url } : null);
              }}
            />
            <p className="hint" id={`${id}-photo-hint`}>
              {t('pose.referenceHint')}
            </p>
            {photo ? (
              <div className="button-row">
                <button type="button" className="button" onClick={() => setPhoto(null)}>
                  {t('pose.removePhoto')}
                </button>
                <button type="button" className="button" onClick={() => void uploadReference()} disabled={busy !== null}>
                  {t('pose.uploadReference')}
                </button>
              </div>
            ) : null}
          </div>

          <fieldset>
            <legend>{t('pose.keypoints')}</legend>
            <ul className="check-list">
              {KEYPOINT_NAMES.map((_, i) => {
                const p = points[i];
                return (
                  <li key={i}>
                    <label>
                      <input type="checkbox" checked={p === null} onChange={(e) => toggleMissing(i, e.target.checked)} />{' '}
                      {t('pose.missing', { name: t(kpKey(i)) })}
                    </label>{' '}
                    <span className="muted small" aria-hidden="true">
                      <span className="swatch" style={{ background: rgb(COLORS[i]!) }} /> {p ? `${p[0]}, ${p[1]}` : '—'}
                    </span>
                  </li>
                );
              })}
            </ul>
          </fieldset>

          <fieldset>
            <legend>{t('pose.limbs')}</legend>
            <ul className="check-list">
              {LIMBS.map(([a, b], i) => (
                <li key={`s${i}`}>
                  <label>
                    <input
                      type="checkbox"
                      checked={standardOn[i] ?? true}
                      onChange={(e) => setStandardOn((prev) => prev.map((on, j) => (j === i ? e.target.checked : on)))}
                    />{' '}
                    <span className="swatch" style={{ background: limbColor(a, b) }} aria-hidden="true" /> {limbLabel(a, b)}
                  </label>
                </li>
              ))}
              {customLimbs.map(([a, b]) => (
                <li key={`c${a}-${b}`}>
                  <label>
                    <input
                      type="checkbox"
                      checked
                      onChange={() => setCustomLimbs((prev) => prev.filter(([x, y]) => !(x === a && y === b)))}
                    />{' '}
                    {limbLabel(a, b)}
                  </label>
                </li>
              ))}
            </ul>
            <div className="row">
              <div className="field">
                <label htmlFor={`${id}-from`}>{t('pose.limbFrom')}</label>
                <select id={`${id}-from`} value={newLimb[0]} onChange={(e) => setNewLimb([Number(e.target.value), newLimb[1]])}>
                  {KEYPOINT_NAMES.map((_, i) => (
                    <option key={i} value={i}>
                      {t(kpKey(i))}
                    </option>
                  ))}
                </select>
              </div>
              <div className="field">
                <label htmlFor={`${id}-to`}>{t('pose.limbTo')}</label>
                <select id={`${id}-to`} value={newLimb[1]} onChange={(e) => setNewLimb([newLimb[0], Number(e.target.value)])}>
                  {KEYPOINT_NAMES.map((_, i) => (
                    <option key={i} value={i}>
                      {t(kpKey(i))}
                    </option>
                  ))}
                </select>
              </div>
            </div>
            <button type="button" className="button" onClick={addLimb}>
              {t('pose.addLimb')}
            </button>
          </fieldset>

          <div className="button-row">
            <button
              type="button"
              className="button"
              onClick={() => {
                const fresh = defaultKeypoints(width, height);
                lastPositions.current = fresh;
                setPoints(fresh);
                setStandardOn(LIMBS.map(() => true));
                setCustomLimbs([]);
              }}
            >
              {t('pose.reset')}
            </button>
            <button type="button" className="button button-primary" onClick={() => void save()} disabled={disabled || busy !== null}>
              {busy === 'save' ? t('state.saving') : t('pose.save')}
            </button>
          </div>
          {message ? (
            <p role="status" className="muted">
              {message}
            </p>
          ) : null}
          <ErrorSummary error={error} labels={errorLabels} />
        </div>
      </div>
    </div>
  );
}

export { NUM_KEYPOINTS };
