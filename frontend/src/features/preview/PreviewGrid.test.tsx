import { render, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { I18nProvider } from '../../i18n/I18nContext';
import { jsonResponse, stubFetch } from '../../test/fetchStub';
import { cell, grid } from '../../test/studioFixtures';
import { LivePreview } from './PreviewGrid';

// Ann's seed 11 uses both tiers, Bo's seed 11 the instant tier alone, the others the LoRA.
const identityOf = (id: number) => (id === 1 ? 'both' : id === 3 ? 'instant' : 'lora');
const pending = (id: number, avatar: string, seed: number, step = 0) =>
  cell(id, avatar, seed, { identity: identityOf(id), progress: step ? { step, total: 20 } : null });
const done = (id: number, avatar: string, seed: number) =>
  cell(id, avatar, seed, { identity: identityOf(id), status: 'succeeded', likeness: 0.82, image_url: `/api/studio/cells/${id}/image`, progress: { step: 20, total: 20 } });

describe('LivePreview', () => {
  it('polls until every cell is done, updating cells, progress bars and the queue banner', async () => {
    const responses = [
      grid('p1', [
        [pending(1, 'av-ann', 11, 5), pending(2, 'av-ann', 12)],
        [pending(3, 'av-bo', 11), pending(4, 'av-bo', 12)],
      ], { queue: { jobs_ahead: 1 } }),
      grid('p1', [
        [done(1, 'av-ann', 11), pending(2, 'av-ann', 12, 10)],
        [cell(3, 'av-bo', 11, { status: 'failed', error: 'Out of memory' }), pending(4, 'av-bo', 12)],
      ], { queue: { jobs_ahead: 0 } }),
      grid('p1', [
        [done(1, 'av-ann', 11), done(2, 'av-ann', 12)],
        [cell(3, 'av-bo', 11, { status: 'failed', error: 'Out of memory' }), done(4, 'av-bo', 12)],
      ]),
    ];
    // The test decides what the backend answers; the component polls at its own pace.
    let current = 0;
    const calls = stubFetch({
      'GET /api/studio/previews/p1': () => jsonResponse(200, responses[current]),
    });
    const initial = grid('p1', [
      [pending(1, 'av-ann', 11), pending(2, 'av-ann', 12)],
      [pending(3, 'av-bo', 11), pending(4, 'av-bo', 12)],
    ], { queue: { jobs_ahead: 3 } });

    render(
      <I18nProvider initial="en">
        <LivePreview initial={initial} intervalMs={10} />
      </I18nProvider>,
    );

    // Pending: rows = avatars, columns = seeds, a progress bar per cell, the queue banner.
    const table = screen.getByTestId('preview-grid');
    expect(within(table).getAllByRole('columnheader').map((h) => h.textContent)).toEqual(['Test avatar', 'Seed 11', 'Seed 12']);
    expect(within(table).getAllByRole('rowheader').map((h) => h.textContent)).toEqual(['Annfemale · 30-44', 'Bomale · 18-29']);
    expect(screen.getAllByRole('progressbar')).toHaveLength(4);
    expect(screen.getByTestId('queue-banner').textContent).toBe('3 jobs ahead of this preview in the queue.');
    expect(screen.getByRole('link', { name: 'Download contact sheet' }).getAttribute('href')).toBe('/api/studio/previews/p1/contact-sheet');

    // First answer: Ann's seed 11 is at step 5 of 20.
    await waitFor(() => expect(screen.getByTestId('queue-banner').textContent).toBe('1 job ahead of this preview in the queue.'));
    const annProgress = screen.getByRole('progressbar', { name: 'Progress of Ann, seed 11' }) as HTMLProgressElement;
    // Every cell, pending or not, names the tier it renders with.
    expect(Array.from(table.querySelectorAll('td')).map((td) => [td.dataset.identity, td.querySelector('.tier-badge')?.textContent])).toEqual([
      ['both', 'LoRA + adapter'],
      ['lora', 'LoRA'],
      ['instant', 'Instant'],
      ['lora', 'LoRA'],
    ]);
    expect(annProgress.value).toBe(5);
    expect(annProgress.max).toBe(20);

    // Next: one image, one failure, one still rendering.
    current = 1;
    expect(await screen.findByRole('img', { name: 'Ann, seed 11' })).toBeTruthy();
    expect(screen.getByText('Failed: Out of memory')).toBeTruthy();
    expect((screen.getByRole('progressbar', { name: 'Progress of Ann, seed 12' }) as HTMLProgressElement).value).toBe(10);

    // Then everything finished: polling stops and the banner goes.
    current = 2;
    await waitFor(() => expect(screen.getAllByRole('img')).toHaveLength(3));
    expect(screen.getByRole('img', { name: 'Bo, seed 12' }).getAttribute('src')).toBe('/api/studio/cells/4/image');
    expect(screen.queryByRole('progressbar')).toBeNull();
    expect(screen.queryByTestId('queue-banner')).toBeNull();
    expect(screen.getByText(/4 of 4 cells done — finished with failures/)).toBeTruthy();
    // Polling stops: wait until the poll loop is torn down (its requests' signal is aborted, after
    // which it schedules nothing) instead of sleeping, then check that no further requests are made.
    const lastPoll = calls[calls.length - 1]!;
    await waitFor(() => expect(lastPoll.signal?.aborted).toBe(true));
    const polls = calls.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls.length).toBe(polls);
    expect(calls.every((c) => c.method === 'GET' && c.path === '/api/studio/previews/p1')).toBe(true);
  });
});
