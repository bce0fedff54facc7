/**
 * The templates studio API (/api/studio/...), see docs/API.md "Templates studio".
 *
 * Endpoints whose bodies the OpenAPI schema types precisely use the generated types (through
 * ./types). Many studio bodies are declared as free-form objects (OpenApiTypes.OBJECT); their
 * precise shapes are defined here from docs/API.md and templates_studio/api.py.
 */
import { STUDIO_BASE, api, query } from './client';
import type {
  Asset,
  Category,
  Identity,
  IntendedAge,
  IntendedGender,
  Paginated,
  PanelAvatar,
  Review,
  ReviewState,
  Revision,
  Template,
  TemplateCreateRequest,
  TemplateEvent,
  TemplatePatchRequest,
  TemplateStats,
  TemplateStatus,
  UploadAssetKind,
} from './types';

// --- The template spec format ------------------------------------------------------------------

export const SAMPLERS = ['euler', 'euler_a', 'dpmpp_2m', 'dpmpp_2m_karras', 'ddim', 'unipc', 'heun'] as const;
export type Sampler = (typeof SAMPLERS)[number];
export const CONTROL_KINDS = ['pose', 'canny', 'depth', 'lighting', 'reference'] as const;
export type ControlKind = (typeof CONTROL_KINDS)[number];
export const ASPECT_RATIOS = ['1:1', '2:3', '3:4', '4:3', '9:16'] as const;
export type AspectRatio = (typeof ASPECT_RATIOS)[number];
export const CATEGORIES: Category[] = ['id_photo', 'business', 'urban', 'casual', 'ancient_style', 'other'];
export const INTENDED_GENDERS: IntendedGender[] = ['any', 'female', 'male'];
export const INTENDED_AGES: IntendedAge[] = ['any', '18-29', '30-44', '45-59', '60+'];

export interface StyleLora {
  key: string;
  weight: number;
}

export interface ControlSpec {
  kind: ControlKind;
  /** sha256 of one of your own uploaded control assets. */
  asset: string;
  /** ControlNet scale; img2img strength for lighting and reference (0-2). */
  conditioning_scale?: number;
  start?: number;
  end?: number;
}

/** A revision's spec (validated by the JSON Schema at GET /api/studio/spec-schema). */
export interface TemplateSpec {
  prompt: string;
  negative_prompt?: string;
  base_model?: string | null;
  style_loras?: StyleLora[];
  controls?: ControlSpec[];
  sampler?: Sampler;
  steps?: number;
  guidance?: number;
  size?: { width: number; height: number };
  aspect_ratio?: AspectRatio;
  seeds: number[];
  candidates?: number;
  keep?: number;
  default_likeness?: number;
  face_refinement?: boolean;
  change_note?: string;
}

/** The subset of JSON Schema (draft 2020-12) the spec schema uses. */
export interface JsonSchema {
  $schema?: string;
  $id?: string;
  title?: string;
  description?: string;
  type?: JsonType | JsonType[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  multipleOf?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
}
export type JsonType = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'null';

// --- Previews -------------------------------------------------------------------------------------

export type CellStatus = 'pending' | 'succeeded' | 'failed';

/** How a render carries the avatar (issue #15): the instant identity adapter, the LoRA, or both. */
export const IDENTITIES: Identity[] = ['instant', 'lora', 'both'];

export interface PreviewCell {
  id: number;
  avatar: string;
  seed: number;
  /** The identity this cell was rendered with: "instant", "lora" or "both". */
  identity: Identity;
  status: CellStatus;
  /** The render job's progress; null before a job exists. */
  progress: { step: number; total: number } | null;
  likeness: number | null;
  error: string | null;
  /** Set once the cell succeeded. */
  image_url: string | null;
}

export interface PreviewAvatar {
  id: string;
  name: string;
  gender: string;
  age_band: string;
}

/** GET /api/studio/previews/{id}: rows[avatar][seed]. */
export interface PreviewGrid {
  id: string;
  revision: number;
  full_panel: boolean;
  new_cells: number;
  seeds: number[];
  avatars: PreviewAvatar[];
  rows: (PreviewCell | null)[][];
  progress: { done: number; total: number };
  complete: boolean;
  queue: { jobs_ahead: number } | null;
  created_at: string;
}

export interface DiffEntry {
  field: string;
  old: unknown;
  new: unknown;
}

/** GET /api/studio/templates/{id}/compare?a=&b= */
export interface CompareResult {
  a: number;
  b: number;
  diff: DiffEntry[];
  grids: { a: PreviewGrid | null; b: PreviewGrid | null };
}

/** GET /api/studio/reviews/{id} */
export interface ReviewDetail extends Review {
  spec: TemplateSpec;
  diff_against_live: DiffEntry[] | null;
  grid: PreviewGrid;
}

/** GET /api/studio/templates/{id}/stats: usage counters and the panel likeness per identity. */
export type { TemplateStats };

/** GET /api/studio/test-avatars: the panel (test avatars with a tier ready). */
export type { PanelAvatar };

/** POST .../previews body: a subset of the panel, and the identity (null: each avatar's best). */
export interface PreviewRequest {
  avatars?: string[];
  identity?: Identity | null;
}

/** POST /api/studio/assets/pose body (COCO-18 keypoints, OpenPose order). */
export interface PosePayload {
  pose: {
    width: number;
    height: number;
    keypoints: ([number, number] | null)[];
    limbs?: [number, number][];
  };
}

// --- Endpoints ----------------------------------------------------------------------------------

const S = STUDIO_BASE;
type Opts = { signal?: AbortSignal };
const withSignal = (signal?: AbortSignal) => (signal ? { signal } : undefined);

export const studio = {
  specSchema: (o: Opts = {}) => api.get<JsonSchema>(`${S}/spec-schema`, withSignal(o.signal)),

  templates: (params: { status?: TemplateStatus; page?: number; page_size?: number } = {}, o: Opts = {}) =>
    api.get<Paginated<Template>>(`${S}/templates${query(params)}`, withSignal(o.signal)),
  createTemplate: (body: TemplateCreateRequest) => api.post<Template>(`${S}/templates`, body),
  template: (id: string, o: Opts = {}) => api.get<Template>(`${S}/templates/${id}`, withSignal(o.signal)),
  patchTemplate: (id: string, body: TemplatePatchRequest) => api.patch<Template>(`${S}/templates/${id}`, body),

  revisions: (id: string, o: Opts = {}) =>
    api.get<Revision[]>(`${S}/templates/${id}/revisions`, withSignal(o.signal)),
  createRevision: (id: string, spec: TemplateSpec) =>
    api.post<Revision>(`${S}/templates/${id}/revisions`, { spec }),
  revision: (id: string, n: number, o: Opts = {}) =>
    api.get<Revision>(`${S}/templates/${id}/revisions/${n}`, withSignal(o.signal)),

  createPreview: (id: string, n: number, body: PreviewRequest = {}) =>
    api.post<PreviewGrid>(`${S}/templates/${id}/revisions/${n}/previews`, body),
  preview: (previewId: string, o: Opts = {}) =>
    api.get<PreviewGrid>(`${S}/previews/${previewId}`, withSignal(o.signal)),
  contactSheetUrl: (previewId: string) => `${S}/previews/${previewId}/contact-sheet`,
  cellImageUrl: (cellId: number) => `${S}/cells/${cellId}/image`,

  compare: (id: string, a: number, b: number, o: Opts = {}) =>
    api.get<CompareResult>(`${S}/templates/${id}/compare${query({ a, b })}`, withSignal(o.signal)),

  submit: (id: string, n: number, note: string) =>
    api.post<Review>(`${S}/templates/${id}/revisions/${n}/submit`, { note }),
  reviews: (params: { state?: ReviewState; page?: number } = {}, o: Opts = {}) =>
    api.get<Paginated<Review>>(`${S}/reviews${query(params)}`, withSignal(o.signal)),
  review: (reviewId: number, o: Opts = {}) =>
    api.get<ReviewDetail>(`${S}/reviews/${reviewId}`, withSignal(o.signal)),
  approve: (reviewId: number, comment: string) =>
    api.post<Template>(`${S}/reviews/${reviewId}/approve`, { comment }),
  requestChanges: (reviewId: number, comment: string) =>
    api.post<Template>(`${S}/reviews/${reviewId}/request-changes`, { comment }),
  unpublish: (id: string, comment: string) => api.post<Template>(`${S}/templates/${id}/unpublish`, { comment }),
  retire: (id: string, comment: string) => api.post<Template>(`${S}/templates/${id}/retire`, { comment }),
  catalogOrder: (templates: string[]) => api.put<void>(`${S}/catalog/order`, { templates }),

  events: (params: { after?: number } = {}, o: Opts = {}) =>
    api.get<Paginated<TemplateEvent>>(`${S}/events${query(params)}`, withSignal(o.signal)),
  templateEvents: (id: string, o: Opts = {}) =>
    api.get<Paginated<TemplateEvent>>(`${S}/templates/${id}/events${query({ page_size: 100 })}`, withSignal(o.signal)),
  stats: (id: string, o: Opts = {}) => api.get<TemplateStats>(`${S}/templates/${id}/stats`, withSignal(o.signal)),

  assets: (o: Opts = {}) => api.get<Paginated<Asset>>(`${S}/assets${query({ page_size: 100 })}`, withSignal(o.signal)),
  uploadAsset: (file: File, kind: UploadAssetKind) => {
    const form = new FormData();
    form.append('file', file);
    form.append('kind', kind);
    return api.post<Asset>(`${S}/assets`, form);
  },
  createPose: (body: PosePayload) => api.post<Asset>(`${S}/assets/pose`, body),
  assetImageUrl: (sha256: string) => `${S}/assets/${sha256}/image`,
  panel: (o: Opts = {}) => api.get<PanelAvatar[]>(`${S}/test-avatars`, withSignal(o.signal)),
};
