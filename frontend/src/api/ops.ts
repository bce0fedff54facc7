/** Operator endpoints under /api/v1/ops/ (docs/API.md "Test-avatar panel"). */
import { api, query } from './client';
import type { AgeBand, Paginated, PanelGender, TestAvatar } from './types';

export const GENDERS: PanelGender[] = ['female', 'male', 'nonbinary', 'unspecified'];
export const AGE_BANDS: AgeBand[] = ['18-29', '30-44', '45-59', '60+'];

export interface TestAvatarUpload {
  name: string;
  gender: PanelGender;
  age_band: AgeBand;
  rights_declaration: string;
  front_photo: File;
  photos: File[];
}

/** A photo not used, and why: found at upload, or by screening when training starts. */
export type DroppedPhoto = TestAvatar['photo_issues'][number];

export type TestAvatarCreated = TestAvatar;

/** GET /api/v1/ops/queue (backend dashboard). */
export interface QueueLane {
  lane: string;
  /** consumer, studio or diagnostic (priority class). */
  class: string | null;
  queued: number;
  running: number;
  oldest_wait_seconds: number | null;
}

export interface QueueWorker {
  name: string;
  /** The lanes this worker serves (rendering/ops.py); `lane` in the first sketch of the API. */
  lanes?: string[] | string;
  lane?: string;
  last_seen: string;
  current_job?: string | null;
}

export interface QueueFailure {
  id: string;
  kind: string;
  /** The error code. */
  error: string;
  message?: string;
  finished_at: string | null;
}

export interface QueueDashboard {
  lanes: QueueLane[];
  workers: QueueWorker[];
  throughput_per_minute: number;
  recent_failures: QueueFailure[];
}

type Opts = { signal?: AbortSignal };
const withSignal = (signal?: AbortSignal) => (signal ? { signal } : undefined);

export const ops = {
  testAvatars: (o: Opts = {}) =>
    api.get<Paginated<TestAvatar>>(`/ops/test-avatars${query({ page_size: 100 })}`, withSignal(o.signal)),
  createTestAvatar: (upload: TestAvatarUpload) => {
    const form = new FormData();
    form.append('name', upload.name);
    form.append('gender', upload.gender);
    form.append('age_band', upload.age_band);
    form.append('rights_declaration', upload.rights_declaration);
    form.append('front_photo', upload.front_photo);
    for (const photo of upload.photos) form.append('photos', photo);
    return api.post<TestAvatarCreated>('/ops/test-avatars', form);
  },
  deleteTestAvatar: (id: string) => api.delete<void>(`/ops/test-avatars/${id}`),
  queue: (o: Opts = {}) => api.get<QueueDashboard>('/ops/queue', withSignal(o.signal)),
};
