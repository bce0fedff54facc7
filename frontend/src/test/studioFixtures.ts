import type { PreviewCell, PreviewGrid, TemplateSpec } from '../api/studio';
import type { Revision, Template, User } from '../api/types';
import specSchema from './fixtures/specSchema.json';
import { emptyResponse, jsonResponse } from './fetchStub';

export { specSchema };

export const TEMPLATE_ID = '11111111-2222-3333-4444-555555555555';
export const SHA_CANNY = 'a'.repeat(64);
export const SHA_LIGHT = 'b'.repeat(64);

export function studioUser(role: User['role'] = 'designer', email = `${role}@example.com`): User {
  return { id: 7, email, display_name: role, role };
}

export function page<T>(results: T[]) {
  return { count: results.length, next: null, previous: null, results };
}

export const csrf = () => {
  document.cookie = 'csrftoken=tok; path=/';
  return emptyResponse(204);
};

export function spec(overrides: Partial<TemplateSpec> = {}): TemplateSpec {
  return {
    prompt: '{subject}, business portrait',
    negative_prompt: '',
    base_model: null,
    style_loras: [],
    controls: [],
    sampler: 'dpmpp_2m',
    steps: 25,
    guidance: 5,
    aspect_ratio: '3:4',
    size: { width: 768, height: 1024 },
    seeds: [11, 12],
    candidates: 4,
    keep: 2,
    default_likeness: 0.9,
    face_refinement: false,
    change_note: '',
    ...overrides,
  };
}

export function template(overrides: Partial<Template> = {}): Template {
  return {
    id: TEMPLATE_ID,
    title: 'Business headshot',
    slug: 'business-headshot',
    category: 'business',
    tags: ['office'],
    intended_gender: 'any',
    intended_age: 'any',
    status: 'draft',
    owner: 'designer@example.com',
    live_revision_number: null,
    latest_revision_number: 1,
    latest_review: null,
    catalog_order: 0,
    created_at: '2025-01-01T10:00:00Z',
    updated_at: '2025-01-02T10:00:00Z',
    ...overrides,
  };
}

export function revision(number: number, s: TemplateSpec = spec(), note = ''): Revision {
  return {
    id: `rev-${number}`,
    number,
    spec: s,
    change_note: note,
    created_by: 'designer@example.com',
    created_at: '2025-01-01T10:00:00Z',
  };
}

export function cell(id: number, avatar: string, seed: number, patch: Partial<PreviewCell> = {}): PreviewCell {
  return { id, avatar, seed, identity: 'lora', status: 'pending', progress: null, likeness: null, error: null, image_url: null, ...patch };
}

export function grid(id: string, rows: PreviewCell[][], patch: Partial<PreviewGrid> = {}): PreviewGrid {
  const all = rows.flat();
  const done = all.filter((c) => c.status !== 'pending').length;
  return {
    id,
    revision: 1,
    full_panel: true,
    new_cells: all.length,
    seeds: [11, 12],
    avatars: [
      { id: 'av-ann', name: 'Ann', gender: 'female', age_band: '30-44' },
      { id: 'av-bo', name: 'Bo', gender: 'male', age_band: '18-29' },
    ],
    rows,
    progress: { done, total: all.length },
    complete: done === all.length && all.every((c) => c.status === 'succeeded'),
    queue: null,
    created_at: '2025-01-01T10:00:00Z',
    ...patch,
  };
}

export { jsonResponse };
