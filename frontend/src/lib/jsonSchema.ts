/**
 * A small JSON Schema validator for the keywords the template spec schema uses: type, enum,
 * const, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, minLength,
 * maxLength, pattern, items, minItems, maxItems, uniqueItems, properties, required,
 * additionalProperties. Unknown keywords are ignored (annotations such as default,
 * description, $schema, $id, title).
 *
 * Error paths follow the backend (templates_studio/spec.py): dotted, list positions as numbers;
 * a missing required property or a forbidden extra property is reported at its own path
 * (`controls.0.asset`), everything else at the instance's path ("" for the root).
 */
import type { JsonSchema, JsonType } from '../api/studio';

export interface SchemaError {
  path: string;
  keyword: string;
  params: Record<string, string | number>;
}

function join(path: string, key: string | number): string {
  return path ? `${path}.${key}` : String(key);
}

export function jsonTypeOf(value: unknown): JsonType {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'boolean';
  return 'object';
}

function matchesType(value: unknown, type: JsonType): boolean {
  const actual = jsonTypeOf(value);
  if (type === 'number') return actual === 'number' || actual === 'integer';
  return actual === type;
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  return (
    ka.length === kb.length &&
    ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  );
}

/** Count Unicode code points, as JSON Schema does. */
function stringLength(s: string): number {
  return Array.from(s).length;
}

const patternCache = new Map<string, RegExp | null>();
function compile(pattern: string): RegExp | null {
  if (!patternCache.has(pattern)) {
    try {
      patternCache.set(pattern, new RegExp(pattern, 'u'));
    } catch {
      patternCache.set(pattern, null);
    }
  }
  return patternCache.get(pattern) ?? null;
}

export function validate(schema: JsonSchema, value: unknown, path = ''): SchemaError[] {
  const errors: SchemaError[] = [];
  const fail = (keyword: string, params: Record<string, string | number> = {}, at = path) =>
    errors.push({ path: at, keyword, params });

  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((type) => matchesType(value, type))) {
      fail('type', { type: types.join(' | ') });
      return errors; // Other keywords would only repeat the problem.
    }
  }
  if (schema.enum && !schema.enum.some((option) => deepEqual(option, value))) {
    fail('enum', { values: schema.enum.map((v) => String(v)).join(', ') });
  }
  if ('const' in schema && schema.const !== undefined && !deepEqual(schema.const, value)) {
    fail('const', { value: String(schema.const) });
  }

  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) fail('minimum', { limit: schema.minimum });
    if (schema.maximum !== undefined && value > schema.maximum) fail('maximum', { limit: schema.maximum });
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum)
      fail('exclusiveMinimum', { limit: schema.exclusiveMinimum });
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum)
      fail('exclusiveMaximum', { limit: schema.exclusiveMaximum });
    if (schema.multipleOf !== undefined) {
      const quotient = value / schema.multipleOf;
      if (Math.abs(quotient - Math.round(quotient)) > 1e-9) fail('multipleOf', { n: schema.multipleOf });
    }
  }

  if (typeof value === 'string') {
    const length = stringLength(value);
    if (schema.minLength !== undefined && length < schema.minLength) fail('minLength', { limit: schema.minLength });
    if (schema.maxLength !== undefined && length > schema.maxLength) fail('maxLength', { limit: schema.maxLength });
    if (schema.pattern !== undefined) {
      const regex = compile(schema.pattern);
      if (regex && !regex.test(value)) fail('pattern', { pattern: schema.pattern });
    }
  }

  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) fail('minItems', { limit: schema.minItems });
    if (schema.maxItems !== undefined && value.length > schema.maxItems) fail('maxItems', { limit: schema.maxItems });
    if (schema.uniqueItems) {
      const duplicate = value.some((item, i) => value.slice(0, i).some((other) => deepEqual(item, other)));
      if (duplicate) fail('uniqueItems');
    }
    if (schema.items) {
      value.forEach((item, i) => errors.push(...validate(schema.items as JsonSchema, item, join(path, i))));
    }
  }

  if (jsonTypeOf(value) === 'object') {
    const object = value as Record<string, unknown>;
    for (const name of schema.required ?? []) {
      if (!(name in object)) fail('required', { property: name }, join(path, name));
    }
    const properties = schema.properties ?? {};
    for (const [name, child] of Object.entries(object)) {
      const childSchema = properties[name];
      if (childSchema) {
        errors.push(...validate(childSchema, child, join(path, name)));
      } else if (schema.additionalProperties === false) {
        fail('additionalProperties', { property: name }, join(path, name));
      } else if (typeof schema.additionalProperties === 'object') {
        errors.push(...validate(schema.additionalProperties, child, join(path, name)));
      }
    }
  }
  return errors;
}
