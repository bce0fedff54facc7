/**
 * Named aliases over the generated OpenAPI types (src/api/schema.d.ts, `npm run gen:api`).
 * Where the backend declares a free-form object (OpenApiTypes.OBJECT / JSONField), the alias
 * narrows that member with the precise interface from src/api/studio.ts or src/api/ops.ts.
 */
import type { components } from './schema';
import type { TemplateSpec } from './studio';

type Schemas = components['schemas'];

/** The backend's list envelope: `{count, next, previous, results}`. */
export interface Paginated<T> {
  count: number;
  next?: string | null;
  previous?: string | null;
  results: T[];
}

export type Role = Schemas['RoleEnum'];
export type User = Schemas['User'];
export type Invitation = Schemas['Invitation'];
export type InvitationAcceptRequest = Schemas['InvitationAcceptRequest'];
export type PasswordChangeRequest = Schemas['PasswordChangeRequest'];

export type TemplateStatus = Schemas['TemplateStatusEnum'];
export type Category = Schemas['CategoryEnum'];
export type IntendedGender = Schemas['IntendedGenderEnum'];
export type IntendedAge = Schemas['IntendedAgeEnum'];
export type ReviewState = Schemas['StateEnum'];
export type Review = Schemas['Review'];
export type TemplateEvent = Schemas['Event'];
export type AssetKind = Schemas['AssetKindEnum'];
export type UploadAssetKind = Schemas['AssetUploadKindEnum'];
export type Asset = Omit<Schemas['Asset'], 'keypoints'> & { readonly keypoints: unknown };
export type TemplateCreateRequest = Omit<Schemas['TemplateCreateRequest'], 'spec'> & {
  spec: TemplateSpec;
};
export type TemplatePatchRequest = Omit<Schemas['PatchedTemplateRequest'], 'tags'> & {
  tags?: string[];
};

/** A template; `latest_review` is a Review (the schema only says "object"). */
export type Template = Omit<Schemas['Template'], 'latest_review' | 'tags'> & {
  readonly latest_review: Review | null;
  tags?: string[];
};

/** A revision; `spec` is the stored spec with defaults filled in. */
export type Revision = Omit<Schemas['Revision'], 'spec'> & { readonly spec: TemplateSpec };

/** How a render carries the avatar: "instant" (identity adapter), "lora" or "both". */
export type Identity = Schemas['IdentityEnum'];
/** The best tier an avatar has ready: "studio" (its LoRA) or "instant" (the identity adapter). */
export type AvatarTier = Schemas['TierEnum'];
export type LoraStatus = Schemas['LoraStatusEnum'];
export type TierLikeness = Schemas['TierLikeness'];
export type PanelLikeness = Schemas['PanelLikeness'];
export type TemplateStats = Schemas['TemplateStats'];
export type PanelAvatar = Schemas['PanelAvatar'];

export type AvatarStatus = Schemas['AvatarStatusEnum'];
export type PanelGender = Schemas['GenderEnum'];
export type AgeBand = Schemas['AgeBandEnum'];

/** An operator's test avatar; progress/queue/failure narrowed from "object". */
export type TestAvatar = Omit<Schemas['TestAvatar'], 'progress' | 'queue' | 'failure'> & {
  readonly progress: { step: number; total: number };
  readonly queue: { position: number; eta_seconds: number | null } | null;
  readonly failure: { code: string; reason: string } | null;
};
