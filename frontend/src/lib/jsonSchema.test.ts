import { describe, expect, it } from 'vitest';
import type { JsonSchema } from '../api/studio';
import specSchema from '../test/fixtures/specSchema.json';
import { validate } from './jsonSchema';
import { assignErrors } from './specForm';

const schema = specSchema as JsonSchema;
const paths = (value: unknown) => validate(schema, value).map((e) => `${e.path}:${e.keyword}`);

describe('validate (spec schema keywords)', () => {
  it('accepts the documented example spec', () => {
    expect(
      paths({
        prompt: '{subject}, business portrait, navy suit, soft studio light',
        negative_prompt: 'blurry, deformed hands',
        base_model: null,
        style_loras: [{ key: 'urban-style', weight: 0.7 }],
        controls: [
          { kind: 'pose', asset: 'a'.repeat(64), conditioning_scale: 1.0, start: 0.0, end: 1.0 },
          { kind: 'lighting', asset: 'b'.repeat(64), conditioning_scale: 0.5 },
        ],
        sampler: 'dpmpp_2m',
        steps: 25,
        guidance: 5.0,
        aspect_ratio: '3:4',
        seeds: [11, 12, 13],
        candidates: 4,
        keep: 2,
        default_likeness: 0.9,
        face_refinement: true,
        change_note: 'Warmer key light',
      }),
    ).toEqual([]);
  });

  it('reports each keyword at the backend’s dotted path', () => {
    expect(
      paths({
        prompt: '',
        extra: 1,
        base_model: 3,
        style_loras: [{ key: 'k', weight: 2.5, x: 1 }, { weight: 1 }],
        controls: [{ kind: 'sketch', asset: 'nothex', conditioning_scale: -1 }, 1, 2, 3, 4],
        sampler: 'plms',
        steps: 2.5,
        size: { width: 100, height: 4096 },
        seeds: [1, 1, -1, 2 ** 32],
        face_refinement: 'yes',
      }),
    ).toEqual([
      'prompt:minLength',
      'prompt:pattern',
      'extra:additionalProperties',
      'base_model:type',
      'style_loras.0.weight:maximum',
      'style_loras.0.x:additionalProperties',
      'style_loras.1.key:required',
      'controls:maxItems',
      'controls.0.kind:enum',
      'controls.0.asset:pattern',
      'controls.0.conditioning_scale:minimum',
      'controls.1:type',
      'controls.2:type',
      'controls.3:type',
      'controls.4:type',
      'sampler:enum',
      'steps:type',
      'size.width:multipleOf',
      'size.height:maximum',
      'seeds:uniqueItems',
      'seeds.2:minimum',
      'seeds.3:maximum',
      'face_refinement:type',
    ]);
    expect(paths({ prompt: '{subject}' })).toEqual(['seeds:required']);
    expect(paths({ prompt: '{subject}', seeds: [] })).toEqual(['seeds:minItems']);
  });
});

describe('assignErrors', () => {
  it('puts each error on the most specific input and keeps the rest apart', () => {
    const { byInput, unassigned } = assignErrors(
      { 'seeds.2': ['a'], 'controls.0.start': ['b'], 'controls.1': ['c'], 'spec.prompt': ['d'], other: ['e'] },
      ['seeds', 'controls', 'controls.0.start', 'prompt'],
    );
    expect(byInput).toEqual({ seeds: ['a'], 'controls.0.start': ['b'], controls: ['c'], prompt: ['d'] });
    expect(unassigned).toEqual({ other: ['e'] });
  });
});
