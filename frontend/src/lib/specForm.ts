/**
 * The template editor's form model: strings where the user types numbers (so a half-typed
 * value is reported, not silently dropped), converted to a spec for validation and saving.
 */
import type { AspectRatio, ControlKind, ControlSpec, JsonSchema, Sampler, StyleLora, TemplateSpec } from '../api/studio';
import { validate } from './jsonSchema';
import type { SchemaError } from './jsonSchema';

export interface LoraRow {
  uid: number;
  key: string;
  weight: string;
}

export interface ControlRow {
  uid: number;
  kind: ControlKind;
  asset: string;
  scale: string;
  start: string;
  end: string;
}

export interface SpecForm {
  prompt: string;
  negative_prompt: string;
  base_model: string;
  style_loras: LoraRow[];
  controls: ControlRow[];
  sampler: Sampler;
  steps: string;
  guidance: string;
  sizeMode: 'aspect' | 'size';
  aspect_ratio: AspectRatio;
  width: string;
  height: string;
  seeds: string;
  candidates: string;
  keep: string;
  default_likeness: string;
  face_refinement: boolean;
  change_note: string;
}

let uidCounter = 0;
export const nextUid = () => ++uidCounter;

export const EMPTY_FORM: SpecForm = {
  prompt: '{subject}, ',
  negative_prompt: '',
  base_model: '',
  style_loras: [],
  controls: [],
  sampler: 'dpmpp_2m',
  steps: '25',
  guidance: '5',
  sizeMode: 'aspect',
  aspect_ratio: '3:4',
  width: '768',
  height: '1024',
  seeds: '11, 12, 13',
  candidates: '4',
  keep: '2',
  default_likeness: '0.9',
  face_refinement: false,
  change_note: '',
};

const str = (v: number | undefined, fallback = '') => (v === undefined ? fallback : String(v));

export function controlRow(control: Partial<ControlSpec> & { kind: ControlKind; asset: string }): ControlRow {
  return {
    uid: nextUid(),
    kind: control.kind,
    asset: control.asset,
    scale: str(control.conditioning_scale, '1'),
    start: str(control.start, '0'),
    end: str(control.end, '1'),
  };
}

/** A stored spec (defaults filled; it holds both size and aspect_ratio) as a form. */
export function specToForm(spec: TemplateSpec): SpecForm {
  const hasAspect = spec.aspect_ratio !== undefined;
  return {
    prompt: spec.prompt ?? '',
    negative_prompt: spec.negative_prompt ?? '',
    base_model: spec.base_model ?? '',
    style_loras: (spec.style_loras ?? []).map((l) => ({ uid: nextUid(), key: l.key, weight: String(l.weight) })),
    controls: (spec.controls ?? []).map((c) => controlRow(c)),
    sampler: spec.sampler ?? EMPTY_FORM.sampler,
    steps: str(spec.steps, EMPTY_FORM.steps),
    guidance: str(spec.guidance, EMPTY_FORM.guidance),
    sizeMode: hasAspect || !spec.size ? 'aspect' : 'size',
    aspect_ratio: spec.aspect_ratio ?? EMPTY_FORM.aspect_ratio,
    width: str(spec.size?.width, EMPTY_FORM.width),
    height: str(spec.size?.height, EMPTY_FORM.height),
    seeds: (spec.seeds ?? []).join(', '),
    candidates: str(spec.candidates, EMPTY_FORM.candidates),
    keep: str(spec.keep, EMPTY_FORM.keep),
    default_likeness: str(spec.default_likeness, EMPTY_FORM.default_likeness),
    face_refinement: spec.face_refinement ?? false,
    // A change note describes one revision; start the next one empty.
    change_note: '',
  };
}

/** '' -> undefined (omitted: the server fills the default); numbers -> number; else the text. */
export function parseNumber(text: string): number | string | undefined {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  const n = Number(trimmed);
  return Number.isFinite(n) ? n : trimmed;
}

function put(target: Record<string, unknown>, key: string, value: unknown) {
  if (value !== undefined) target[key] = value;
}

/** The spec to validate and send. Unparsable numbers stay strings so validation names them. */
export function formToSpec(form: SpecForm): Record<string, unknown> {
  const spec: Record<string, unknown> = { prompt: form.prompt };
  if (form.negative_prompt) spec.negative_prompt = form.negative_prompt;
  spec.base_model = form.base_model.trim() === '' ? null : form.base_model.trim();
  spec.style_loras = form.style_loras.map((row) => {
    const lora: Record<string, unknown> = { key: row.key.trim() };
    put(lora, 'weight', parseNumber(row.weight));
    return lora as unknown as StyleLora;
  });
  spec.controls = form.controls.map((row) => {
    const control: Record<string, unknown> = { kind: row.kind, asset: row.asset };
    put(control, 'conditioning_scale', parseNumber(row.scale));
    put(control, 'start', parseNumber(row.start));
    put(control, 'end', parseNumber(row.end));
    return control;
  });
  spec.sampler = form.sampler;
  put(spec, 'steps', parseNumber(form.steps));
  put(spec, 'guidance', parseNumber(form.guidance));
  if (form.sizeMode === 'aspect') {
    spec.aspect_ratio = form.aspect_ratio;
  } else {
    const size: Record<string, unknown> = {};
    put(size, 'width', parseNumber(form.width));
    put(size, 'height', parseNumber(form.height));
    spec.size = size;
  }
  spec.seeds = form.seeds
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((token) => parseNumber(token));
  put(spec, 'candidates', parseNumber(form.candidates));
  put(spec, 'keep', parseNumber(form.keep));
  put(spec, 'default_likeness', parseNumber(form.default_likeness));
  spec.face_refinement = form.face_refinement;
  if (form.change_note) spec.change_note = form.change_note;
  return spec;
}

/** Schema errors plus the rules the schema cannot state (the server checks them too). */
export function validateSpec(schema: JsonSchema, spec: Record<string, unknown>): SchemaError[] {
  const errors = validate(schema, spec);
  if (errors.length > 0) return errors;
  const num = (v: unknown, fallback: number) => (typeof v === 'number' ? v : fallback);
  if (num(spec.keep, 2) > num(spec.candidates, 4)) {
    errors.push({ path: 'keep', keyword: 'keepCandidates', params: {} });
  }
  (spec.controls as Record<string, unknown>[]).forEach((control, i) => {
    if (num(control.start, 0) >= num(control.end, 1)) {
      errors.push({ path: `controls.${i}.end`, keyword: 'startEnd', params: {} });
    }
  });
  return errors;
}

/**
 * Assign each error key to the most specific registered input path that is the key itself or
 * one of its parents (`seeds.2` -> `seeds`). Keys with no input go to `unassigned`.
 */
export function assignErrors(
  fields: Record<string, string[]>,
  inputs: readonly string[],
): { byInput: Record<string, string[]>; unassigned: Record<string, string[]> } {
  const byInput: Record<string, string[]> = {};
  const unassigned: Record<string, string[]> = {};
  const sorted = [...inputs].sort((a, b) => b.length - a.length);
  for (const [rawKey, messages] of Object.entries(fields)) {
    const key = rawKey.startsWith('spec.') ? rawKey.slice(5) : rawKey;
    const input = sorted.find((p) => key === p || key.startsWith(`${p}.`));
    const target = input ? byInput : unassigned;
    const at = input ?? key;
    target[at] = [...(target[at] ?? []), ...messages];
  }
  return { byInput, unassigned };
}
