import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { App } from '../../App';
import { errorBody, jsonResponse, stubFetch } from '../../test/fetchStub';
import { SHA_CANNY, SHA_LIGHT, TEMPLATE_ID, csrf, page, specSchema, studioUser, template } from '../../test/studioFixtures';

const ASSETS = [
  { sha256: SHA_CANNY, kind: 'canny', width: 512, height: 768, keypoints: null, image_url: `/api/studio/assets/${SHA_CANNY}/image`, created_at: '2025-01-01T00:00:00Z' },
  { sha256: SHA_LIGHT, kind: 'lighting', width: 512, height: 768, keypoints: null, image_url: `/api/studio/assets/${SHA_LIGHT}/image`, created_at: '2025-01-01T00:00:00Z' },
];

function openEditor(createResponse: () => Response) {
  const calls = stubFetch({
    'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('designer')),
    'GET /api/v1/auth/csrf': csrf,
    'GET /api/studio/spec-schema': () => jsonResponse(200, specSchema),
    'GET /api/studio/assets': () => jsonResponse(200, page(ASSETS)),
    'POST /api/studio/templates': createResponse,
    [`GET /api/studio/templates/${TEMPLATE_ID}`]: () => jsonResponse(200, template()),
    [`GET /api/studio/templates/${TEMPLATE_ID}/revisions`]: () => jsonResponse(200, []),
    [`GET /api/studio/templates/${TEMPLATE_ID}/events`]: () => jsonResponse(200, page([])),
    [`GET /api/studio/templates/${TEMPLATE_ID}/stats`]: () =>
      jsonResponse(200, { generations: 0, refinements: 0, downloads: 0, failures: 0 }),
  });
  window.history.pushState(null, '', '/studio/templates/new');
  render(<App />);
  return calls;
}

/** The error text wired to an input through aria-describedby. */
function describedErrors(input: HTMLElement): string {
  const ids = (input.getAttribute('aria-describedby') ?? '').split(' ').filter((id) => id.endsWith('-error'));
  return ids.map((id) => document.getElementById(id)?.textContent ?? '').join(' ');
}

const change = (label: string, value: string) => fireEvent.change(screen.getByLabelText(label), { target: { value } });

describe('Template editor validation', () => {
  it('shows client-side JSON Schema errors next to the inputs and does not post', async () => {
    const calls = openEditor(() => jsonResponse(201, template()));
    await screen.findByLabelText('Prompt');
    change('Title', 'Business headshot');
    change('Prompt', 'a portrait with no placeholder');
    change('Seeds', '5, 5, x');
    change('Steps', '500');
    change('Guidance', 'strong');
    change('Candidates', '2');
    change('Keep', '3');
    fireEvent.click(screen.getByRole('button', { name: 'Create template' }));

    const alert = await screen.findByTestId('editor-errors');
    expect(alert.textContent).toContain('The template has invalid fields.');

    const prompt = screen.getByLabelText('Prompt');
    expect(prompt.getAttribute('aria-invalid')).toBe('true');
    expect(describedErrors(prompt)).toContain('must contain {subject}');
    expect(describedErrors(screen.getByLabelText('Seeds'))).toContain('Values must not repeat.');
    expect(describedErrors(screen.getByLabelText('Seeds'))).toContain('Enter a whole number.');
    expect(describedErrors(screen.getByLabelText('Steps'))).toBe('Must be at most 150.');
    expect(describedErrors(screen.getByLabelText('Guidance'))).toBe('Enter a number.');
    expect(screen.getByLabelText('Title').getAttribute('aria-invalid')).toBeNull();
    expect(calls.some((c) => c.method === 'POST')).toBe(false);

    // Fixing a field clears its message.
    change('Prompt', '{subject}, studio light');
    expect(describedErrors(screen.getByLabelText('Prompt'))).toBe('');
  });

  it('reports the cross-field rules and a missing control image', async () => {
    openEditor(() => jsonResponse(201, template()));
    await screen.findByLabelText('Prompt');
    change('Title', 'T');
    change('Candidates', '2');
    change('Keep', '3');
    fireEvent.click(screen.getByRole('button', { name: 'Add control' }));
    change('Control 1 start', '0.8');
    change('Control 1 end', '0.2');
    fireEvent.click(screen.getByRole('button', { name: 'Create template' }));
    await screen.findByTestId('editor-errors');
    // The schema error (no image chosen) comes first; the start/end rule needs a valid schema.
    expect(describedErrors(screen.getByLabelText('Control 1 image'))).toBe('Choose an uploaded image.');
    // The image library loads separately from the spec schema: wait until the uploaded image is an
    // option, otherwise the select drops the value and no image gets chosen.
    const image = screen.getByLabelText('Control 1 image') as HTMLSelectElement;
    await waitFor(() => expect(Array.from(image.options, (o) => o.value)).toContain(SHA_CANNY));
    change('Control 1 image', SHA_CANNY);
    await waitFor(() => expect(describedErrors(screen.getByLabelText('Control 1 end'))).toBe('End must be greater than start.'));
    expect(describedErrors(screen.getByLabelText('Keep'))).toBe('Cannot keep more images than there are candidates.');
  });

  it('maps the server’s 400 field errors (dotted paths) to the right inputs', async () => {
    const calls = openEditor(() =>
      jsonResponse(
        400,
        errorBody(400, 'invalid', 'The template spec has invalid fields.', {
          title: ['A template with this title already exists.'],
          'controls.0.conditioning_scale': ['2.5 is greater than the maximum of 2'],
          'seeds.1': ['Seed is reserved.'],
          'style_loras.0.key': ['Unknown LoRA.'],
          'something.else': ['Unmapped problem.'],
        }),
      ),
    );
    await screen.findByLabelText('Prompt');
    change('Title', 'Business headshot');
    change('Category', 'urban');
    change('Tags', 'office, navy');
    change('Prompt', '{subject}, navy suit');
    fireEvent.click(screen.getByRole('button', { name: 'Add style LoRA' }));
    change('LoRA 1 key', 'urban-style');
    // Pick the uploaded canny image from the library, then the lighting map.
    fireEvent.click(await screen.findByRole('button', { name: `Use Canny edges image ${SHA_CANNY.slice(0, 10)} as a control` }));
    fireEvent.click(screen.getByRole('radio', { name: `Lighting map ${SHA_LIGHT.slice(0, 10)}` }));
    change('Control 1 scale', '1.5');
    fireEvent.click(screen.getByRole('button', { name: 'Create template' }));

    const alert = await screen.findByTestId('editor-errors');
    expect(alert.textContent).toContain('The template spec has invalid fields.');
    expect(alert.textContent).toContain('something.else: Unmapped problem.');
    expect(describedErrors(screen.getByLabelText('Control 1 scale'))).toBe('2.5 is greater than the maximum of 2');
    expect(describedErrors(screen.getByLabelText('Seeds'))).toBe('Seed is reserved.');
    expect(describedErrors(screen.getByLabelText('LoRA 1 key'))).toBe('Unknown LoRA.');
    expect(describedErrors(screen.getByLabelText('Title'))).toBe('A template with this title already exists.');
    expect(describedErrors(screen.getByLabelText('Control 2 scale'))).toBe('');

    const post = calls.find((c) => c.method === 'POST' && c.path === '/api/studio/templates');
    expect(post?.headers['x-csrftoken']).toBe('tok');
    expect(post?.body).toEqual({
      title: 'Business headshot',
      category: 'urban',
      tags: ['office', 'navy'],
      intended_gender: 'any',
      intended_age: 'any',
      spec: {
        prompt: '{subject}, navy suit',
        base_model: null,
        style_loras: [{ key: 'urban-style', weight: 0.7 }],
        controls: [
          { kind: 'canny', asset: SHA_CANNY, conditioning_scale: 1.5, start: 0, end: 1 },
          { kind: 'lighting', asset: SHA_LIGHT, conditioning_scale: 0.5, start: 0, end: 1 },
        ],
        sampler: 'dpmpp_2m',
        steps: 25,
        guidance: 5,
        aspect_ratio: '3:4',
        seeds: [11, 12, 13],
        candidates: 4,
        keep: 2,
        default_likeness: 0.9,
        face_refinement: false,
      },
    });

    // Editing the field clears its server error; the others stay.
    change('Control 1 scale', '1.2');
    expect(describedErrors(screen.getByLabelText('Control 1 scale'))).toBe('');
    expect(describedErrors(screen.getByLabelText('Seeds'))).toBe('Seed is reserved.');
    expect(within(screen.getByTestId('control-0')).getByRole('img').getAttribute('src')).toBe(`/api/studio/assets/${SHA_CANNY}/image`);
  });

  it('creates the template and opens it', async () => {
    openEditor(() => jsonResponse(201, template()));
    await screen.findByLabelText('Prompt');
    change('Title', 'Business headshot');
    fireEvent.click(screen.getByRole('button', { name: 'Create template' }));
    expect(await screen.findByRole('heading', { name: 'Business headshot' })).toBeTruthy();
    expect(window.location.pathname).toBe(`/studio/templates/${TEMPLATE_ID}`);
  });
});
