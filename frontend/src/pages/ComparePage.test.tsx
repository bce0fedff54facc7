import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { App } from '../App';
import { jsonResponse, stubFetch } from '../test/fetchStub';
import { TEMPLATE_ID, cell, grid, revision, spec, studioUser } from '../test/studioFixtures';

const ok = (id: number, avatar: string, seed: number, rev: string) =>
  cell(id, avatar, seed, { status: 'succeeded', image_url: `/api/studio/cells/${id}/image?${rev}` });

function gridFor(id: string, rev: string, base: number) {
  return grid(id, [
    [ok(base + 1, 'av-ann', 11, rev), ok(base + 2, 'av-ann', 12, rev)],
    [ok(base + 3, 'av-bo', 11, rev), cell(base + 4, 'av-bo', 12, { status: 'failed', error: 'x' })],
  ]);
}

describe('Compare view', () => {
  it('shows the diff as a field/old/new table and both grids cell against cell', async () => {
    const calls = stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('designer')),
      [`GET /api/studio/templates/${TEMPLATE_ID}/revisions`]: () =>
        jsonResponse(200, [revision(3, spec(), 'cooler'), revision(2, spec(), 'warmer'), revision(1)]),
      [`GET /api/studio/templates/${TEMPLATE_ID}/compare`]: (call) => {
        const q = new URLSearchParams(call.search);
        return jsonResponse(200, {
          a: Number(q.get('a')),
          b: Number(q.get('b')),
          diff: [
            { field: 'controls.0.conditioning_scale', old: 1, new: 0.8 },
            { field: 'prompt', old: '{subject}, office', new: '{subject}, warm office' },
            { field: 'style_loras', old: [], new: [{ key: 'urban-style', weight: 0.7 }] },
            { field: 'base_model', old: null, new: 'sdxl' },
          ],
          grids: { a: gridFor('ga', 'a', 0), b: gridFor('gb', 'b', 10) },
        });
      },
    });
    window.history.pushState(null, '', `/studio/templates/${TEMPLATE_ID}/compare?a=1&b=2`);
    render(<App />);

    const table = await screen.findByTestId('diff-table');
    expect(within(table).getAllByRole('columnheader').map((h) => h.textContent)).toEqual(['Field', 'r1 (old)', 'r2 (new)']);
    const rows = within(table)
      .getAllByRole('row')
      .slice(1)
      .map((row) => Array.from(row.querySelectorAll('th, td')).map((c) => c.textContent));
    expect(rows).toEqual([
      ['controls.0.conditioning_scale', '1', '0.8'],
      ['prompt', '{subject}, office', '{subject}, warm office'],
      ['style_loras', '[]', '[{"key":"urban-style","weight":0.7}]'],
      ['base_model', 'null', 'sdxl'],
    ]);

    const sideBySide = screen.getByTestId('compare-grid');
    const annSeed11 = sideBySide.querySelectorAll('tbody tr')[0]!.querySelectorAll('td')[0]!;
    expect(Array.from(annSeed11.querySelectorAll('img')).map((img) => img.getAttribute('alt'))).toEqual([
      'r1: Ann, seed 11',
      'r2: Ann, seed 11',
    ]);
    expect(within(sideBySide).getByRole('img', { name: 'r2: Bo, seed 11' }).getAttribute('src')).toBe('/api/studio/cells/13/image?b');
    expect(within(sideBySide).getAllByText('Failed')).toHaveLength(2);

    // Choosing other revisions reloads the comparison.
    fireEvent.change(screen.getByLabelText('Revision A'), { target: { value: '2' } });
    fireEvent.change(screen.getByLabelText('Revision B'), { target: { value: '3' } });
    fireEvent.click(screen.getByRole('button', { name: 'Compare' }));
    await waitFor(() => expect(screen.getByRole('columnheader', { name: 'r3 (new)' })).toBeTruthy());
    expect(window.location.search).toBe('?a=2&b=3');
    expect(calls.filter((c) => c.path.endsWith('/compare')).map((c) => c.search)).toEqual(['a=1&b=2', 'a=2&b=3']);
  });

  it('opens from the revision history with two revisions ticked', async () => {
    stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('reviewer')),
      [`GET /api/studio/templates/${TEMPLATE_ID}`]: () =>
        jsonResponse(200, {
          id: TEMPLATE_ID, title: 'Business headshot', slug: 'b', category: 'business', tags: [], intended_gender: 'any',
          intended_age: 'any', status: 'in_review', owner: 'someone@example.com', live_revision_number: null,
          latest_revision_number: 2, latest_review: null, catalog_order: 0, created_at: '2025-01-01T00:00:00Z',
          updated_at: '2025-01-01T00:00:00Z',
        }),
      [`GET /api/studio/templates/${TEMPLATE_ID}/revisions`]: () => jsonResponse(200, [revision(2), revision(1)]),
      [`GET /api/studio/templates/${TEMPLATE_ID}/events`]: () => jsonResponse(200, { count: 0, results: [] }),
      [`GET /api/studio/templates/${TEMPLATE_ID}/stats`]: () =>
        jsonResponse(200, { generations: 12, refinements: 3, downloads: 7, failures: 1 }),
      [`GET /api/studio/templates/${TEMPLATE_ID}/compare`]: () =>
        jsonResponse(200, { a: 1, b: 2, diff: [], grids: { a: null, b: null } }),
    });
    window.history.pushState(null, '', `/studio/templates/${TEMPLATE_ID}`);
    render(<App />);
    expect((await screen.findByTestId('stat-generations')).textContent).toBe('12');
    const compare = screen.getByRole('button', { name: 'Compare' });
    expect((compare as HTMLButtonElement).disabled).toBe(true);
    fireEvent.click(screen.getByRole('checkbox', { name: 'Select revision 2 to compare' }));
    fireEvent.click(screen.getByRole('checkbox', { name: 'Select revision 1 to compare' }));
    fireEvent.click(compare);
    expect(await screen.findByText('The specs are identical.')).toBeTruthy();
    expect(window.location.pathname + window.location.search).toBe(`/studio/templates/${TEMPLATE_ID}/compare?a=1&b=2`);
  });
});
