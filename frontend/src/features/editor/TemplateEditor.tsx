import { useId, useMemo, useRef, useState } from 'react';
import type { FormEvent, ReactNode } from 'react';
import { ApiError } from '../../api/client';
import {
  ASPECT_RATIOS,
  CATEGORIES,
  CONTROL_KINDS,
  INTENDED_AGES,
  INTENDED_GENDERS,
  SAMPLERS,
  studio,
} from '../../api/studio';
import type { ControlKind, JsonSchema, TemplateSpec } from '../../api/studio';
import type { Asset, Category, IntendedAge, IntendedGender, UploadAssetKind } from '../../api/types';
import { CheckboxField, Field } from '../../components/Form';
import { ErrorState, LoadingState } from '../../components/StatusViews';
import { useI18n } from '../../i18n/I18nContext';
import { asApiError, useApi } from '../../lib/useApi';
import { EMPTY_FORM, assignErrors, controlRow, formToSpec, nextUid, specToForm, validateSpec } from '../../lib/specForm';
import type { ControlRow, SpecForm } from '../../lib/specForm';
import { PoseEditor } from '../pose/PoseEditor';
import { schemaMessage } from './schemaMessages';

export interface MetaForm {
  title: string;
  category: Category;
  tags: string;
  intended_gender: IntendedGender;
  intended_age: IntendedAge;
}

export interface EditorSaveInput {
  meta: MetaForm;
  spec: TemplateSpec;
}

export interface TemplateEditorProps {
  schema: JsonSchema;
  mode: 'create' | 'revision';
  initialSpec?: TemplateSpec | undefined;
  /** Saves; throws an ApiError whose `fields` are mapped to the inputs. */
  onSave: (input: EditorSaveInput) => Promise<void>;
}

const META_PATHS = ['title', 'category', 'tags', 'intended_gender', 'intended_age'] as const;
const MAX_LORAS = 5;
const MAX_CONTROLS = 4;
const UPLOAD_KINDS: UploadAssetKind[] = ['canny', 'depth', 'lighting', 'reference', 'pose'];

export const shortSha = (sha: string) => sha.slice(0, 10);

export function parseTags(text: string): string[] {
  return text
    .split(',')
    .map((tag) => tag.trim())
    .filter(Boolean);
}

export function TemplateEditor({ schema, mode, initialSpec, onSave }: TemplateEditorProps) {
  const { t } = useI18n();
  const uid = useId();
  const [form, setForm] = useState<SpecForm>(() => (initialSpec ? specToForm(initialSpec) : EMPTY_FORM));
  const [meta, setMeta] = useState<MetaForm>({
    title: '',
    category: 'business',
    tags: '',
    intended_gender: 'any',
    intended_age: 'any',
  });
  const [touched, setTouched] = useState<Set<string>>(new Set());
  const [showAll, setShowAll] = useState(false);
  const [serverError, setServerError] = useState<ApiError | null>(null);
  const [serverFields, setServerFields] = useState<Record<string, string[]>>({});
  const [saving, setSaving] = useState(false);
  const [saved, setSaved] = useState(false);
  const [poseOpen, setPoseOpen] = useState(false);
  const summaryRef = useRef<HTMLDivElement>(null);

  const assetsApi = useApi((signal) => studio.assets({ signal }), []);
  const [extraAssets, setExtraAssets] = useState<Asset[]>([]);
  const assets = useMemo(() => {
    const loaded = assetsApi.state.status === 'ready' ? assetsApi.state.data.results : [];
    const seen = new Set<string>();
    return [...extraAssets, ...loaded].filter((a) => (seen.has(a.sha256) ? false : (seen.add(a.sha256), true)));
  }, [assetsApi.state, extraAssets]);

  // --- labels and input paths (server and client errors land on these) -----------------------
  const labels: Record<string, string> = {
    title: t('meta.title'),
    category: t('meta.category'),
    tags: t('meta.tags'),
    intended_gender: t('meta.gender'),
    intended_age: t('meta.age'),
    spec: t('spec.section'),
    prompt: t('spec.prompt'),
    negative_prompt: t('spec.negativePrompt'),
    base_model: t('spec.baseModel'),
    style_loras: t('spec.styleLoras'),
    controls: t('spec.controls'),
    sampler: t('spec.sampler'),
    steps: t('spec.steps'),
    guidance: t('spec.guidance'),
    aspect_ratio: t('spec.aspectRatio'),
    size: t('spec.size'),
    'size.width': t('spec.width'),
    'size.height': t('spec.height'),
    seeds: t('spec.seeds'),
    candidates: t('spec.candidates'),
    keep: t('spec.keep'),
    default_likeness: t('spec.likeness'),
    face_refinement: t('spec.faceRefinement'),
    change_note: t('spec.changeNote'),
  };
  form.style_loras.forEach((_, i) => {
    labels[`style_loras.${i}`] = t('spec.lora', { n: i + 1 });
    labels[`style_loras.${i}.key`] = t('spec.loraKey', { n: i + 1 });
    labels[`style_loras.${i}.weight`] = t('spec.loraWeight', { n: i + 1 });
  });
  form.controls.forEach((_, i) => {
    labels[`controls.${i}`] = t('spec.control', { n: i + 1 });
    labels[`controls.${i}.kind`] = t('spec.controlKind', { n: i + 1 });
    labels[`controls.${i}.asset`] = t('spec.controlAsset', { n: i + 1 });
    labels[`controls.${i}.conditioning_scale`] = t('spec.controlScale', { n: i + 1 });
    labels[`controls.${i}.start`] = t('spec.controlStart', { n: i + 1 });
    labels[`controls.${i}.end`] = t('spec.controlEnd', { n: i + 1 });
  });
  if (mode !== 'create') for (const p of META_PATHS) delete labels[p];
  const inputPaths = Object.keys(labels);

  // --- validation ----------------------------------------------------------------------------
  const specValue = formToSpec(form);
  const clientErrors: Record<string, string[]> = {};
  for (const error of validateSpec(schema, specValue)) {
    (clientErrors[error.path || 'spec'] ??= []).push(schemaMessage(error, t));
  }
  if (mode === 'create') {
    if (!meta.title.trim()) (clientErrors.title ??= []).push(t('form.required'));
    else if (meta.title.trim().length > 120) (clientErrors.title ??= []).push(t('schema.maxLength', { limit: 120 }));
  }
  const client = assignErrors(clientErrors, inputPaths);
  const server = assignErrors(serverFields, inputPaths);

  function errorsFor(path: string): string[] {
    const messages = [...(server.byInput[path] ?? [])];
    if (showAll || touched.has(path)) {
      for (const m of client.byInput[path] ?? []) if (!messages.includes(m)) messages.push(m);
    }
    return messages;
  }

  function clearServer(path: string) {
    setSaved(false);
    setServerFields((prev) => {
      const { byInput } = assignErrors(prev, inputPaths);
      if (!byInput[path]) return prev;
      const next: Record<string, string[]> = {};
      for (const [key, messages] of Object.entries(prev)) {
        const owner = assignErrors({ [key]: messages }, inputPaths).byInput;
        if (!owner[path]) next[key] = messages;
      }
      return next;
    });
  }

  function update<K extends keyof SpecForm>(key: K, value: SpecForm[K], path: string = key) {
    setForm((f) => ({ ...f, [key]: value }));
    clearServer(path);
  }

  function updateMeta<K extends keyof MetaForm>(key: K, value: MetaForm[K]) {
    setMeta((m) => ({ ...m, [key]: value }));
    clearServer(key);
  }

  function updateControl(index: number, patch: Partial<ControlRow>, path: string) {
    setForm((f) => ({ ...f, controls: f.controls.map((c, i) => (i === index ? { ...c, ...patch } : c)) }));
    clearServer(path);
  }

  function addControl(kind: ControlKind, asset: string, scale?: number) {
    setForm((f) =>
      f.controls.length >= MAX_CONTROLS
        ? f
        : { ...f, controls: [...f.controls, controlRow({ kind, asset, ...(scale !== undefined ? { conditioning_scale: scale } : {}) })] },
    );
    clearServer('controls');
  }

  const blur = (path: string) => () => setTouched((prev) => (prev.has(path) ? prev : new Set(prev).add(path)));

  const errorCount = Object.keys(clientErrors).length;

  async function handleSubmit(event: FormEvent) {
    event.preventDefault();
    setShowAll(true);
    setSaved(false);
    if (errorCount > 0) {
      setServerError(null);
      requestAnimationFrame(() => summaryRef.current?.focus());
      return;
    }
    setSaving(true);
    try {
      await onSave({ meta, spec: specValue as unknown as TemplateSpec });
      setServerError(null);
      setServerFields({});
      setSaved(true);
      setShowAll(false);
      setTouched(new Set());
    } catch (err) {
      const apiError = asApiError(err);
      setServerError(apiError);
      setServerFields(apiError.fields);
      requestAnimationFrame(() => summaryRef.current?.focus());
    } finally {
      setSaving(false);
    }
  }

  // --- the summary ---------------------------------------------------------------------------
  const summaryEntries: [string, string][] = [];
  const shownClient = showAll ? clientErrors : {};
  for (const [key, messages] of Object.entries({ ...shownClient, ...serverFields })) {
    for (const m of messages) summaryEntries.push([key, m]);
  }
  const unassignedServer = server.unassigned;

  const textInput = (path: string, value: string, onChange: (v: string) => void, extra: Record<string, unknown> = {}) =>
    function Render(p: object) {
      return <input {...p} {...extra} value={value} onChange={(e) => onChange(e.target.value)} onBlur={blur(path)} />;
    };

  const lightingAssets = assets.filter((a) => a.kind === 'lighting');
  const lightingIndex = form.controls.findIndex((c) => c.kind === 'lighting');
  const currentLighting = lightingIndex >= 0 ? form.controls[lightingIndex]?.asset ?? '' : '';

  function chooseLighting(sha: string) {
    if (!sha) {
      setForm((f) => ({ ...f, controls: f.controls.filter((c) => c.kind !== 'lighting') }));
    } else if (lightingIndex >= 0) {
      updateControl(lightingIndex, { asset: sha }, `controls.${lightingIndex}.asset`);
    } else {
      addControl('lighting', sha, 0.5);
    }
  }

  function assetAdded(asset: Asset) {
    setExtraAssets((prev) => [asset, ...prev.filter((a) => a.sha256 !== asset.sha256)]);
  }

  return (
    <form noValidate onSubmit={(e) => void handleSubmit(e)} className="editor" aria-busy={saving}>
      {(showAll && errorCount > 0) || serverError ? (
        <div ref={summaryRef} role="alert" tabIndex={-1} className="notice notice-error" data-testid="editor-errors">
          <p className="notice-title">{serverError ? serverError.message : t('editor.invalid')}</p>
          <ul className="error-list">
            {summaryEntries.map(([key, message], i) => (
              <li key={`${key}-${i}`}>
                {labels[key] ?? labels[Object.keys(labels).find((p) => key.startsWith(`${p}.`)) ?? ''] ?? key}: {message}
              </li>
            ))}
          </ul>
          {Object.keys(unassignedServer).length === 0 && serverError?.requestId ? (
            <p className="muted small">{t('state.requestId', { id: serverError.requestId })}</p>
          ) : null}
        </div>
      ) : null}
      {saved ? (
        <p role="status" className="notice notice-success">
          {mode === 'create' ? t('editor.created') : t('editor.saved')}
        </p>
      ) : null}

      {mode === 'create' ? (
        <Section title={t('editor.details')}>
          <Field label={labels.title} errors={errorsFor('title')}>
            {textInput('title', meta.title, (v) => updateMeta('title', v), { maxLength: 200 })}
          </Field>
          <div className="row">
            <Field label={labels.category} errors={errorsFor('category')}>
              {(p) => (
                <select {...p} value={meta.category} onChange={(e) => updateMeta('category', e.target.value as Category)}>
                  {CATEGORIES.map((c) => (
                    <option key={c} value={c}>
                      {t(`category.${c}`)}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            <Field label={labels.intended_gender} errors={errorsFor('intended_gender')}>
              {(p) => (
                <select {...p} value={meta.intended_gender} onChange={(e) => updateMeta('intended_gender', e.target.value as IntendedGender)}>
                  {INTENDED_GENDERS.map((g) => (
                    <option key={g} value={g}>
                      {t(`gender.${g}`)}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            <Field label={labels.intended_age} errors={errorsFor('intended_age')}>
              {(p) => (
                <select {...p} value={meta.intended_age} onChange={(e) => updateMeta('intended_age', e.target.value as IntendedAge)}>
                  {INTENDED_AGES.map((a) => (
                    <option key={a} value={a}>
                      {a === 'any' ? t('gender.any') : a}
                    </option>
                  ))}
                </select>
              )}
            </Field>
          </div>
          <Field label={labels.tags} errors={errorsFor('tags')} hint={t('meta.tagsHint')}>
            {textInput('tags', meta.tags, (v) => updateMeta('tags', v))}
          </Field>
        </Section>
      ) : null}

      <Section title={t('editor.prompts')}>
        <Field label={labels.prompt} errors={errorsFor('prompt')} hint={t('spec.promptHint')}>
          {(p) => (
            <textarea {...p} rows={3} value={form.prompt} onChange={(e) => update('prompt', e.target.value)} onBlur={blur('prompt')} />
          )}
        </Field>
        <Field label={labels.negative_prompt} errors={errorsFor('negative_prompt')}>
          {(p) => (
            <textarea
              {...p}
              rows={2}
              value={form.negative_prompt}
              onChange={(e) => update('negative_prompt', e.target.value)}
              onBlur={blur('negative_prompt')}
            />
          )}
        </Field>
        <Field label={labels.base_model} errors={errorsFor('base_model')} hint={t('spec.baseModelHint')}>
          {textInput('base_model', form.base_model, (v) => update('base_model', v))}
        </Field>
      </Section>

      <Section title={t('spec.styleLoras')}>
        <GroupErrors errors={errorsFor('style_loras')} />
        {form.style_loras.length === 0 ? <p className="muted small">{t('spec.noLoras')}</p> : null}
        {form.style_loras.map((row, i) => (
          <div className="row row-item" key={row.uid}>
            <Field label={labels[`style_loras.${i}.key`]} errors={errorsFor(`style_loras.${i}.key`)}>
              {textInput(`style_loras.${i}.key`, row.key, (v) => {
                setForm((f) => ({ ...f, style_loras: f.style_loras.map((r, j) => (j === i ? { ...r, key: v } : r)) }));
                clearServer(`style_loras.${i}.key`);
              })}
            </Field>
            <Field label={labels[`style_loras.${i}.weight`]} errors={errorsFor(`style_loras.${i}.weight`)} className="field-narrow">
              {textInput(
                `style_loras.${i}.weight`,
                row.weight,
                (v) => {
                  setForm((f) => ({ ...f, style_loras: f.style_loras.map((r, j) => (j === i ? { ...r, weight: v } : r)) }));
                  clearServer(`style_loras.${i}.weight`);
                },
                { inputMode: 'decimal' },
              )}
            </Field>
            <button
              type="button"
              className="button button-small"
              onClick={() => setForm((f) => ({ ...f, style_loras: f.style_loras.filter((_, j) => j !== i) }))}
            >
              {t('spec.removeLora', { n: i + 1 })}
            </button>
          </div>
        ))}
        <button
          type="button"
          className="button"
          disabled={form.style_loras.length >= MAX_LORAS}
          onClick={() => setForm((f) => ({ ...f, style_loras: [...f.style_loras, { uid: nextUid(), key: '', weight: '0.7' }] }))}
        >
          {t('spec.addLora')}
        </button>
      </Section>

      <Section title={t('spec.controls')}>
        <GroupErrors errors={errorsFor('controls')} />
        {form.controls.length === 0 ? <p className="muted small">{t('spec.noControls')}</p> : null}
        {form.controls.map((row, i) => {
          const options = assets.filter((a) => a.kind === row.kind || (row.kind === 'reference' && a.kind === 'reference'));
          const known = assets.some((a) => a.sha256 === row.asset);
          return (
            <div className="control-row" key={row.uid} data-testid={`control-${i}`}>
              <div className="control-thumb">
                {row.asset ? (
                  <img src={assets.find((a) => a.sha256 === row.asset)?.image_url ?? studio.assetImageUrl(row.asset)} alt={t('spec.controlThumb', { n: i + 1 })} />
                ) : (
                  <span className="muted small">{t('spec.noImage')}</span>
                )}
              </div>
              <div className="row">
                <Field label={labels[`controls.${i}.kind`]} errors={errorsFor(`controls.${i}.kind`)}>
                  {(p) => (
                    <select {...p} value={row.kind} onChange={(e) => updateControl(i, { kind: e.target.value as ControlKind }, `controls.${i}.kind`)}>
                      {CONTROL_KINDS.map((k) => (
                        <option key={k} value={k}>
                          {t(`kind.${k}`)}
                        </option>
                      ))}
                    </select>
                  )}
                </Field>
                <Field label={labels[`controls.${i}.asset`]} errors={errorsFor(`controls.${i}.asset`)}>
                  {(p) => (
                    <select {...p} value={row.asset} onChange={(e) => updateControl(i, { asset: e.target.value }, `controls.${i}.asset`)} onBlur={blur(`controls.${i}.asset`)}>
                      <option value="">{t('spec.chooseAsset')}</option>
                      {!known && row.asset ? <option value={row.asset}>{shortSha(row.asset)}</option> : null}
                      {options.map((a) => (
                        <option key={a.sha256} value={a.sha256}>
                          {`${t(`kind.${a.kind}`)} ${shortSha(a.sha256)} (${a.width}×${a.height})`}
                        </option>
                      ))}
                    </select>
                  )}
                </Field>
                {(['conditioning_scale', 'start', 'end'] as const).map((field) => {
                  const key = field === 'conditioning_scale' ? 'scale' : field;
                  const path = `controls.${i}.${field}`;
                  return (
                    <Field key={field} label={labels[path]} errors={errorsFor(path)} className="field-narrow">
                      {textInput(path, row[key], (v) => updateControl(i, { [key]: v }, path), { inputMode: 'decimal' })}
                    </Field>
                  );
                })}
              </div>
              <button
                type="button"
                className="button button-small"
                onClick={() => setForm((f) => ({ ...f, controls: f.controls.filter((_, j) => j !== i) }))}
              >
                {t('spec.removeControl', { n: i + 1 })}
              </button>
            </div>
          );
        })}
        <button type="button" className="button" disabled={form.controls.length >= MAX_CONTROLS} onClick={() => addControl('canny', '')}>
          {t('spec.addControl')}
        </button>

        <AssetLibrary
          state={assetsApi.state}
          onRetry={assetsApi.reload}
          assets={assets}
          canAdd={form.controls.length < MAX_CONTROLS}
          onUploaded={assetAdded}
          onUse={(asset) => addControl(asset.kind, asset.sha256, asset.kind === 'lighting' ? 0.5 : undefined)}
        />

        <fieldset className="lighting-picker">
          <legend>{t('spec.lightingMap')}</legend>
          {lightingAssets.length === 0 ? <p className="muted small">{t('spec.noLighting')}</p> : null}
          <div className="thumb-options">
            <label className="thumb-option">
              <input type="radio" name={`${uid}-lighting`} value="" checked={currentLighting === ''} onChange={() => chooseLighting('')} />
              <span>{t('spec.noLightingChoice')}</span>
            </label>
            {lightingAssets.map((a) => (
              <label className="thumb-option" key={a.sha256}>
                <input
                  type="radio"
                  name={`${uid}-lighting`}
                  value={a.sha256}
                  checked={currentLighting === a.sha256}
                  disabled={lightingIndex < 0 && form.controls.length >= MAX_CONTROLS}
                  onChange={() => chooseLighting(a.sha256)}
                />
                <img src={a.image_url} alt="" />
                <span>{t('spec.lightingOption', { sha: shortSha(a.sha256) })}</span>
              </label>
            ))}
          </div>
        </fieldset>

        <div className="pose-toggle">
          <button type="button" className="button" aria-expanded={poseOpen} onClick={() => setPoseOpen((o) => !o)}>
            {t('pose.open')}
          </button>
          {poseOpen ? (
            <PoseEditor
              disabled={form.controls.length >= MAX_CONTROLS}
              onSaved={(asset) => {
                assetAdded(asset);
                addControl('pose', asset.sha256);
              }}
              onReferenceUploaded={assetAdded}
            />
          ) : null}
          {poseOpen && form.controls.length >= MAX_CONTROLS ? <p className="muted small">{t('spec.controlsFull')}</p> : null}
        </div>
      </Section>

      <Section title={t('editor.sampling')}>
        <div className="row">
          <Field label={labels.sampler} errors={errorsFor('sampler')}>
            {(p) => (
              <select {...p} value={form.sampler} onChange={(e) => update('sampler', e.target.value as SpecForm['sampler'])}>
                {SAMPLERS.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label={labels.steps} errors={errorsFor('steps')} hint="1–150" className="field-narrow">
            {textInput('steps', form.steps, (v) => update('steps', v), { inputMode: 'numeric' })}
          </Field>
          <Field label={labels.guidance} errors={errorsFor('guidance')} hint="0–30" className="field-narrow">
            {textInput('guidance', form.guidance, (v) => update('guidance', v), { inputMode: 'decimal' })}
          </Field>
        </div>
        <fieldset>
          <legend>{labels.size}</legend>
          <div className="radio-row">
            <label>
              <input type="radio" name={`${uid}-size`} checked={form.sizeMode === 'aspect'} onChange={() => update('sizeMode', 'aspect', 'aspect_ratio')} />{' '}
              {t('spec.useAspect')}
            </label>
            <label>
              <input type="radio" name={`${uid}-size`} checked={form.sizeMode === 'size'} onChange={() => update('sizeMode', 'size', 'size')} />{' '}
              {t('spec.useSize')}
            </label>
          </div>
          <GroupErrors errors={errorsFor('size')} />
          {form.sizeMode === 'aspect' ? (
            <Field label={labels.aspect_ratio} errors={errorsFor('aspect_ratio')} hint={t('spec.aspectHint')}>
              {(p) => (
                <select {...p} value={form.aspect_ratio} onChange={(e) => update('aspect_ratio', e.target.value as SpecForm['aspect_ratio'])}>
                  {ASPECT_RATIOS.map((r) => (
                    <option key={r} value={r}>
                      {r}
                    </option>
                  ))}
                </select>
              )}
            </Field>
          ) : (
            <div className="row">
              <Field label={labels['size.width']} errors={errorsFor('size.width')} hint={t('spec.sizeHint')} className="field-narrow">
                {textInput('size.width', form.width, (v) => update('width', v, 'size.width'), { inputMode: 'numeric' })}
              </Field>
              <Field label={labels['size.height']} errors={errorsFor('size.height')} className="field-narrow">
                {textInput('size.height', form.height, (v) => update('height', v, 'size.height'), { inputMode: 'numeric' })}
              </Field>
            </div>
          )}
        </fieldset>
      </Section>

      <Section title={t('editor.output')}>
        <Field label={labels.seeds} errors={errorsFor('seeds')} hint={t('spec.seedsHint')}>
          {textInput('seeds', form.seeds, (v) => update('seeds', v))}
        </Field>
        <div className="row">
          <Field label={labels.candidates} errors={errorsFor('candidates')} hint="1–16" className="field-narrow">
            {textInput('candidates', form.candidates, (v) => update('candidates', v), { inputMode: 'numeric' })}
          </Field>
          <Field label={labels.keep} errors={errorsFor('keep')} hint={t('spec.keepHint')} className="field-narrow">
            {textInput('keep', form.keep, (v) => update('keep', v), { inputMode: 'numeric' })}
          </Field>
          <Field label={labels.default_likeness} errors={errorsFor('default_likeness')} hint="0.3–1.5" className="field-narrow">
            {textInput('default_likeness', form.default_likeness, (v) => update('default_likeness', v), { inputMode: 'decimal' })}
          </Field>
        </div>
        <CheckboxField
          label={labels.face_refinement}
          hint={t('spec.faceRefinementHint')}
          checked={form.face_refinement}
          errors={errorsFor('face_refinement')}
          onChange={(v) => update('face_refinement', v)}
        />
        <Field label={labels.change_note} errors={errorsFor('change_note')} hint={t('spec.changeNoteHint')}>
          {textInput('change_note', form.change_note, (v) => update('change_note', v), { maxLength: 600 })}
        </Field>
      </Section>

      <div className="button-row sticky-actions">
        <button type="submit" className="button button-primary" disabled={saving}>
          {saving ? t('state.saving') : mode === 'create' ? t('editor.create') : t('editor.saveRevision')}
        </button>
      </div>
    </form>
  );
}

function Section({ title, children }: { title: string; children: ReactNode }) {
  const id = useId();
  return (
    <section className="editor-section card" aria-labelledby={id}>
      <h3 id={id}>{title}</h3>
      {children}
    </section>
  );
}

function GroupErrors({ errors }: { errors: string[] }) {
  if (errors.length === 0) return null;
  return <p className="field-error">{errors.join(' ')}</p>;
}

interface AssetLibraryProps {
  state: ReturnType<typeof useApi<{ results: Asset[] }>>['state'];
  onRetry: () => void;
  assets: Asset[];
  canAdd: boolean;
  onUploaded: (asset: Asset) => void;
  onUse: (asset: Asset) => void;
}

/** Upload control/reference images (POST /assets) and pick uploaded ones as controls. */
function AssetLibrary({ state, onRetry, assets, canAdd, onUploaded, onUse }: AssetLibraryProps) {
  const { t } = useI18n();
  const id = useId();
  const [kind, setKind] = useState<UploadAssetKind>('canny');
  const [file, setFile] = useState<File | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState('');
  const fileRef = useRef<HTMLInputElement>(null);

  async function upload() {
    if (!file) {
      setError(new ApiError(400, 'invalid', t('assets.chooseFile'), { file: [t('assets.chooseFile')] }));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const asset = await studio.uploadAsset(file, kind);
      onUploaded(asset);
      setMessage(t('assets.uploaded', { sha: shortSha(asset.sha256) }));
      setFile(null);
      if (fileRef.current) fileRef.current.value = '';
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="asset-library" role="group" aria-labelledby={`${id}-title`}>
      <h4 id={`${id}-title`}>{t('assets.title')}</h4>
      <div className="row">
        <Field label={t('assets.kind')} errors={error?.fieldErrors('kind')}>
          {(p) => (
            <select {...p} value={kind} onChange={(e) => setKind(e.target.value as UploadAssetKind)}>
              {UPLOAD_KINDS.map((k) => (
                <option key={k} value={k}>
                  {t(`kind.${k}`)}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label={t('assets.file')} errors={error?.fieldErrors('file')}>
          {(p) => (
            <input {...p} ref={fileRef} type="file" accept="image/png,image/jpeg,image/webp" onChange={(e) => setFile(e.target.files?.[0] ?? null)} />
          )}
        </Field>
        <button type="button" className="button" onClick={() => void upload()} disabled={busy}>
          {busy ? t('state.uploading') : t('assets.upload')}
        </button>
      </div>
      {error && !error.hasFieldErrors ? (
        <p role="alert" className="field-error">
          {error.message}
        </p>
      ) : null}
      {message ? (
        <p role="status" className="muted small">
          {message}
        </p>
      ) : null}
      {state.status === 'loading' ? <LoadingState inline /> : null}
      {state.status === 'error' ? <ErrorState inline error={state.error} onRetry={onRetry} /> : null}
      {state.status === 'ready' && assets.length === 0 ? <p className="muted small">{t('assets.empty')}</p> : null}
      {assets.length > 0 ? (
        <ul className="thumb-grid">
          {assets.map((a) => (
            <li key={a.sha256}>
              <img src={a.image_url} alt={t('assets.thumbAlt', { kind: t(`kind.${a.kind}`), sha: shortSha(a.sha256) })} />
              <span className="small muted">
                {t(`kind.${a.kind}`)} · {a.width}×{a.height}
              </span>
              <button
                type="button"
                className="button button-small"
                disabled={!canAdd}
                onClick={() => onUse(a)}
                aria-label={t('assets.useLabel', { kind: t(`kind.${a.kind}`), sha: shortSha(a.sha256) })}
              >
                {t('assets.use')}
              </button>
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

