import type { I18n } from '../../i18n/I18nContext';
import type { SchemaError } from '../../lib/jsonSchema';

/** A person-readable message for one validation error. */
export function schemaMessage(error: SchemaError, t: I18n['t']): string {
  const p = error.params;
  switch (error.keyword) {
    case 'type': {
      const type = String(p.type);
      if (type === 'integer') return t('schema.integer');
      if (type.includes('number') || type === 'integer') return t('schema.number');
      return t('schema.type', { type });
    }
    case 'enum':
      return t('schema.enum', { values: String(p.values) });
    case 'const':
      return t('schema.enum', { values: String(p.value) });
    case 'minimum':
      return t('schema.minimum', { limit: p.limit ?? '' });
    case 'maximum':
      return t('schema.maximum', { limit: p.limit ?? '' });
    case 'exclusiveMinimum':
      return t('schema.exclusiveMinimum', { limit: p.limit ?? '' });
    case 'exclusiveMaximum':
      return t('schema.exclusiveMaximum', { limit: p.limit ?? '' });
    case 'multipleOf':
      return t('schema.multipleOf', { n: p.n ?? '' });
    case 'minLength':
      return p.limit === 1 ? t('form.required') : t('schema.minLength', { limit: p.limit ?? '' });
    case 'maxLength':
      return t('schema.maxLength', { limit: p.limit ?? '' });
    case 'pattern':
      if (String(p.pattern).includes('subject')) return t('schema.subject');
      if (String(p.pattern).includes('0-9a-f')) return t('schema.asset');
      return t('schema.pattern');
    case 'minItems':
      return t('schema.minItems', { n: p.limit ?? '' });
    case 'maxItems':
      return t('schema.maxItems', { n: p.limit ?? '' });
    case 'uniqueItems':
      return t('schema.uniqueItems');
    case 'required':
      return t('form.required');
    case 'additionalProperties':
      return t('schema.additional');
    case 'keepCandidates':
      return t('schema.keepCandidates');
    case 'startEnd':
      return t('schema.startEnd');
    default:
      return t('schema.invalid');
  }
}
