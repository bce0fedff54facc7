import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { App } from '../App';
import { emptyResponse, errorBody, jsonResponse, stubFetch } from '../test/fetchStub';
import { TEMPLATE_ID, cell, csrf, grid, page, revision, spec, specSchema, studioUser, template } from '../test/studioFixtures';

function renderAt(path: string) {
  window.history.pushState(null, '', path);
  return render(<App />);
}

const T = `/api/studio/templates/${TEMPLATE_ID}`;

describe('Template workspace', () => {
  it('shows the reviewer’s feedback, saves a revision, previews it and submits it for review', async () => {
    const rejected = template({
      status: 'changes_requested',
      latest_review: {
        id: 4, template: TEMPLATE_ID, template_title: 'Business headshot', revision_number: 1, preview: 'p0',
        state: 'changes_requested', note: 'First try', submitted_by: 'designer@example.com',
        submitted_at: '2025-01-02T10:00:00Z', decided_by: 'rita@example.com', comment: 'Light is too cold.',
        decided_at: '2025-01-03T10:00:00Z',
      },
    });
    let revisions = [revision(1, spec(), 'first')];
    const instant = { identity: 'instant' as const };
    const pending = grid(
      'p2',
      [
        [cell(1, 'av-ann', 11, instant), cell(2, 'av-ann', 12, instant)],
        [cell(3, 'av-bo', 11, instant), cell(4, 'av-bo', 12, instant)],
      ],
      { revision: 2, queue: { jobs_ahead: 2 } },
    );
    const calls = stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('designer')),
      'GET /api/v1/auth/csrf': csrf,
      [`GET ${T}`]: () => jsonResponse(200, rejected),
      [`GET ${T}/revisions`]: () => jsonResponse(200, revisions),
      [`GET ${T}/events`]: () =>
        jsonResponse(200, page([{ id: 9, template: TEMPLATE_ID, template_title: 'Business headshot', revision_number: 1,
          actor: 'rita@example.com', action: 'request_changes', from_status: 'in_review', to_status: 'changes_requested',
          comment: 'Light is too cold.', created_at: '2025-01-03T10:00:00Z' }])),
      [`GET ${T}/stats`]: () =>
        jsonResponse(200, {
          generations: 0, refinements: 0, downloads: 0, failures: 0,
          panel_likeness: { instant: { mean: 0.7123, cells: 8 }, both: { mean: 0.83, cells: 8 } },
        }),
      'GET /api/studio/spec-schema': () => jsonResponse(200, specSchema),
      'GET /api/studio/assets': () => jsonResponse(200, page([])),
      [`POST ${T}/revisions`]: (call) => {
        const saved = revision(2, (call.body as { spec: ReturnType<typeof spec> }).spec, 'Warmer key light');
        revisions = [saved, ...revisions];
        return jsonResponse(201, saved);
      },
      [`POST ${T}/revisions/2/previews`]: (call) =>
        (call.body as { identity?: string }).identity === 'lora'
          ? jsonResponse(400, errorBody(400, 'invalid', 'These test avatars cannot render with identity "lora" (LoRA (studio tier)): Bo. Choose another identity, or preview without them.', { identity: ['"lora" is not available for the test avatars: Bo (av-bo).'] }))
          : jsonResponse(202, pending),
      'GET /api/studio/previews/p2': () => jsonResponse(200, pending),
      [`POST ${T}/revisions/2/submit`]: () =>
        jsonResponse(409, errorBody(409, 'conflict', 'Preview this exact revision on the whole panel before submitting.')),
    });
    renderAt(`/studio/templates/${TEMPLATE_ID}`);

    // The stats show the live revision's mean likeness per tier on the panel.
    const likeness = await screen.findByTestId('panel-likeness');
    expect(within(likeness).getAllByRole('row').map((r) => r.textContent)).toEqual([
      'TierMean likenessCells',
      'Instant0.718',
      'LoRA + adapter0.838',
    ]);

    const feedback = await screen.findByTestId('review-feedback');
    expect(feedback.textContent).toContain('Changes requested');
    expect(feedback.textContent).toContain('Light is too cold.');
    expect(screen.getByText('Changes requested', { selector: '.status-badge' })).toBeTruthy();

    const prompt = await screen.findByLabelText('Prompt');
    expect((prompt as HTMLTextAreaElement).value).toBe('{subject}, business portrait');
    fireEvent.change(prompt, { target: { value: '{subject}, warm light' } });
    fireEvent.change(screen.getByLabelText('Change note'), { target: { value: 'Warmer key light' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save revision' }));
    expect(await screen.findByText('Revision saved.')).toBeTruthy();
    const post = calls.find((c) => c.method === 'POST' && c.path === `${T}/revisions`);
    expect(post?.body).toMatchObject({ spec: { prompt: '{subject}, warm light', change_note: 'Warmer key light', aspect_ratio: '3:4', seeds: [11, 12] } });
    expect((post?.body as { spec: object }).spec).not.toHaveProperty('size');

    await waitFor(() => expect((screen.getByLabelText('Revision') as HTMLSelectElement).value).toBe('2'));
    const identity = screen.getByLabelText('Identity') as HTMLSelectElement;
    expect(Array.from(identity.options).map((o) => [o.value, o.textContent])).toEqual([
      ['', 'Best available'],
      ['instant', 'Instant (identity adapter)'],
      ['lora', 'LoRA'],
      ['both', 'Both (LoRA + adapter)'],
    ]);
    // A tier an avatar lacks: the 400 names it.
    fireEvent.change(identity, { target: { value: 'lora' } });
    fireEvent.click(screen.getByRole('button', { name: 'Preview' }));
    expect((await screen.findByText(/cannot render with identity "lora"/)).textContent).toContain(': Bo.');
    fireEvent.change(identity, { target: { value: 'instant' } });
    fireEvent.click(screen.getByRole('button', { name: 'Preview' }));
    expect((await screen.findByTestId('queue-banner')).textContent).toBe('2 jobs ahead of this preview in the queue.');
    expect(screen.queryByText(/cannot render with identity "lora"/)).toBeNull();
    expect(calls.filter((c) => c.path === `${T}/revisions/2/previews`).map((c) => c.body)).toEqual([
      { identity: 'lora' },
      { identity: 'instant' },
    ]);
    expect(screen.getAllByRole('progressbar')).toHaveLength(4);
    // Each cell says which tier it renders with.
    const cells = within(screen.getByTestId('preview-grid')).getAllByRole('cell');
    expect(cells.map((c) => c.querySelector('.tier-badge')?.textContent)).toEqual(['Instant', 'Instant', 'Instant', 'Instant']);

    fireEvent.change(screen.getByLabelText('Review note'), { target: { value: 'Warmer now' } });
    fireEvent.click(screen.getByRole('button', { name: 'Submit for review' }));
    expect((await screen.findByText(/whole panel before submitting/)).textContent).toBe(
      'Preview this exact revision on the whole panel before submitting.',
    );
    expect(calls.find((c) => c.path === `${T}/revisions/2/submit`)?.body).toEqual({ note: 'Warmer now' });
  });
});

describe('Templates list', () => {
  it('lists templates with status badges and a New template button', async () => {
    stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('designer')),
      'GET /api/studio/templates': () =>
        jsonResponse(200, page([
          template({ id: 'a', title: 'Alpha', status: 'published' }),
          template({ id: 'b', title: 'Beta', status: 'in_review' }),
          template({ id: 'c', title: 'Gamma', status: 'draft', latest_review: { state: 'changes_requested' } as never }),
          template({ id: 'd', title: 'Delta', status: 'retired' }),
        ])),
    });
    renderAt('/studio/templates');
    const table = await screen.findByRole('table');
    const badges = within(table).getAllByText(/Published|In review|Changes requested|Retired|Draft/).map((b) => b.textContent);
    expect(badges).toEqual(['Published', 'In review', 'Changes requested', 'Retired']);
    expect(screen.getByRole('link', { name: 'New template' }).getAttribute('href')).toBe('/studio/templates/new');
  });

  it('shows the empty state', async () => {
    stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('designer')),
      'GET /api/studio/templates': () => jsonResponse(200, page([])),
    });
    renderAt('/studio/templates');
    expect(await screen.findByText(/No templates yet/)).toBeTruthy();
  });
});

describe('Review page', () => {
  function stubReview() {
    return stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('reviewer')),
      'GET /api/v1/auth/csrf': csrf,
      'GET /api/studio/reviews/4': () =>
        jsonResponse(200, {
          id: 4, template: TEMPLATE_ID, template_title: 'Business headshot', revision_number: 2, preview: 'p2', state: 'open',
          note: 'Warmer now', submitted_by: 'designer@example.com', submitted_at: '2025-01-02T10:00:00Z', decided_by: null,
          comment: '', decided_at: null, spec: spec(), diff_against_live: [{ field: 'prompt', old: 'a {subject}', new: 'b {subject}' }],
          grid: grid('p2', [[cell(1, 'av-ann', 11, { status: 'succeeded', image_url: '/x/1' }), cell(2, 'av-ann', 12, { status: 'succeeded', image_url: '/x/2' })],
            [cell(3, 'av-bo', 11, { status: 'succeeded', image_url: '/x/3' }), cell(4, 'av-bo', 12, { status: 'succeeded', image_url: '/x/4' })]]),
        }),
      [`GET ${T}/stats`]: () => jsonResponse(200, { generations: 1, refinements: 0, downloads: 0, failures: 0 }),
      'POST /api/studio/reviews/4/request-changes': () => jsonResponse(200, template({ status: 'changes_requested' })),
      'POST /api/studio/reviews/4/approve': () =>
        jsonResponse(403, errorBody(403, 'permission_denied', 'You cannot approve your own template.')),
    });
  }

  it('requires a comment to request changes, then posts it', async () => {
    const calls = stubReview();
    renderAt('/studio/review/4');
    expect(await screen.findByRole('heading', { name: 'Review: Business headshot, revision 2' })).toBeTruthy();
    expect(screen.getAllByRole('img')).toHaveLength(4);
    expect(within(screen.getByTestId('diff-table')).getByText('b {subject}')).toBeTruthy();

    fireEvent.click(screen.getByRole('button', { name: 'Request changes' }));
    const comment = screen.getByLabelText('Comment');
    expect(comment.getAttribute('aria-invalid')).toBe('true');
    expect(calls.some((c) => c.method === 'POST')).toBe(false);

    fireEvent.change(comment, { target: { value: 'Too cold.' } });
    fireEvent.click(screen.getByRole('button', { name: 'Request changes' }));
    expect(await screen.findByText(/Decision recorded/)).toBeTruthy();
    expect(calls.find((c) => c.path.endsWith('/request-changes'))?.body).toEqual({ comment: 'Too cold.' });
  });

  it('shows the server’s refusal to approve', async () => {
    stubReview();
    renderAt('/studio/review/4');
    fireEvent.click(await screen.findByRole('button', { name: 'Approve' }));
    expect((await screen.findByRole('alert')).textContent).toBe('You cannot approve your own template.');
  });
});

describe('Catalog order', () => {
  it('reorders with the keyboard buttons and drag and drop, then saves', async () => {
    const calls = stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('reviewer')),
      'GET /api/v1/auth/csrf': csrf,
      'GET /api/studio/templates': () =>
        jsonResponse(200, page([
          template({ id: 'a', title: 'Alpha', status: 'published', catalog_order: 1 }),
          template({ id: 'b', title: 'Beta', status: 'published', catalog_order: 2 }),
          template({ id: 'c', title: 'Gamma', status: 'published', catalog_order: 3 }),
        ])),
      'PUT /api/studio/catalog/order': () => emptyResponse(204),
    });
    renderAt('/studio/catalog');
    const list = await screen.findByTestId('catalog-list');
    fireEvent.click(screen.getByRole('button', { name: 'Move Gamma up' }));
    expect(within(list).getAllByRole('listitem').map((li) => li.querySelector('.sortable-title')?.textContent)).toEqual([
      '1. Alpha',
      '2. Gamma',
      '3. Beta',
    ]);
    const items = within(list).getAllByRole('listitem');
    fireEvent.dragStart(items[2]!);
    fireEvent.dragOver(items[0]!);
    fireEvent.drop(items[0]!);
    fireEvent.click(screen.getByRole('button', { name: 'Save order' }));
    expect(await screen.findByText('Catalog order saved.')).toBeTruthy();
    expect(calls.find((c) => c.method === 'PUT')?.body).toEqual({ templates: ['b', 'a', 'c'] });
    expect(calls.find((c) => c.path === '/api/studio/templates')?.search).toBe('status=published&page_size=100');
  });
});

describe('Operator pages', () => {
  it('shows an unavailable state when the queue endpoint answers 404', async () => {
    stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('operator')),
      'GET /api/v1/ops/queue': () => jsonResponse(404, errorBody(404, 'not_found', 'Not found.')),
    });
    renderAt('/studio/operations/queue');
    expect((await screen.findByTestId('queue-unavailable')).textContent).toContain('The queue dashboard is unavailable');
  });

  it('shows lanes, workers, throughput and failures', async () => {
    stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('operator')),
      'GET /api/v1/ops/queue': () =>
        jsonResponse(200, {
          lanes: [{ lane: 'preview', class: 'studio', queued: 3, running: 1, oldest_wait_seconds: 12.4 }],
          workers: [{ name: 'w1', lanes: ['preview', 'generation'], last_seen: '2025-01-01T00:00:00Z', current_job: null }],
          throughput_per_minute: 42,
          recent_failures: [
            { id: 'abcdef123456', kind: 'preview', error: 'OOM', message: 'Out of GPU memory.', finished_at: '2025-01-01T00:00:00Z' },
          ],
        }),
    });
    renderAt('/studio/operations/queue');
    expect((await screen.findByTestId('throughput')).textContent).toBe('42');
    expect(screen.getByRole('rowheader', { name: 'preview' })).toBeTruthy();
    expect(screen.getByText('12 s')).toBeTruthy();
    expect(screen.getByText('OOM')).toBeTruthy();
    expect(screen.getByText('Out of GPU memory.')).toBeTruthy();
    expect(screen.getByText('preview, generation')).toBeTruthy();
    expect(screen.getByText('Idle')).toBeTruthy();
  });

  it('lists the panel with each avatar’s tier and LoRA status', async () => {
    const avatar = (id: string, name: string, patch: Record<string, unknown>) => ({
      id, name, status: 'ready', is_test_avatar: true, panel_gender: 'female', panel_age_band: '30-44',
      photo_count: 4, photo_issues: [], progress: { step: 0, total: 0 }, queue: null, failure: null,
      rights_declaration: 'release', created_at: '2025-01-01T10:00:00Z', finished_at: null,
      last_used_at: '2025-01-01T10:00:00Z', scheduled_deletion_at: null, deletion_notice_at: null, ...patch,
    });
    stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('operator')),
      'GET /api/v1/ops/test-avatars': () =>
        jsonResponse(200, page([
          avatar('a1', 'Ann', { tier: 'studio', lora_status: 'ready' }),
          avatar('a2', 'Bo', { status: 'training', tier: 'instant', lora_status: 'training', progress: { step: 3, total: 10 } }),
          // Intake still running; an older server without the tier fields.
          avatar('a3', 'Cy', { status: 'preparing' }),
        ])),
    });
    renderAt('/studio/operations/test-avatars');
    const table = await screen.findByRole('table');
    expect(within(table).getAllByRole('columnheader').map((h) => h.textContent)).toContain('Tier');
    const tiers = ['a1', 'a2', 'a3'].map((id) => screen.getByTestId(`tier-${id}`).textContent);
    const loras = ['a1', 'a2', 'a3'].map((id) => screen.getByTestId(`lora-${id}`).textContent);
    expect(tiers).toEqual(['Studio (LoRA)', 'Instant', 'None yet']);
    expect(loras).toEqual(['Ready', 'Training', '—']);
  });

  it('uploads a test avatar as multipart and shows per-photo errors', async () => {
    const calls = stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('operator')),
      'GET /api/v1/auth/csrf': csrf,
      'GET /api/v1/ops/test-avatars': () => jsonResponse(200, page([])),
      'POST /api/v1/ops/test-avatars': () =>
        jsonResponse(400, errorBody(400, 'invalid', 'Only 1 of 2 photos can be used.', { 'photos.1': ['We could not find a face in this photo.'] })),
    });
    renderAt('/studio/operations/test-avatars');
    await screen.findByText('No test avatars yet.');
    fireEvent.click(screen.getByRole('button', { name: 'Add test avatar' }));
    expect(screen.getByLabelText('Front photo').getAttribute('aria-invalid')).toBe('true');
    expect(calls.some((c) => c.method === 'POST')).toBe(false);

    const file = (name: string) => new File(['x'], name, { type: 'image/jpeg' });
    fireEvent.change(screen.getByLabelText('Name'), { target: { value: 'Ann' } });
    fireEvent.change(screen.getByLabelText('Gender'), { target: { value: 'female' } });
    fireEvent.change(screen.getByLabelText('Front photo'), { target: { files: [file('front.jpg')] } });
    fireEvent.change(screen.getByLabelText('Photos'), { target: { files: [file('a.jpg'), file('b.jpg')] } });
    fireEvent.change(screen.getByLabelText('Rights declaration'), { target: { value: 'Ann, staff, signed release 2025-01.' } });
    fireEvent.click(screen.getByRole('checkbox', { name: /I confirm/ }));
    fireEvent.click(screen.getByRole('button', { name: 'Add test avatar' }));

    await waitFor(() => expect(screen.getByLabelText('Photos').getAttribute('aria-invalid')).toBe('true'));
    expect(screen.getAllByText('b.jpg: We could not find a face in this photo.').length).toBeGreaterThan(0);
    const form = calls.find((c) => c.method === 'POST')?.form;
    expect(form?.get('name')).toBe('Ann');
    expect(form?.get('gender')).toBe('female');
    expect(form?.get('age_band')).toBe('30-44');
    expect(form?.get('rights_declaration')).toBe('Ann, staff, signed release 2025-01.');
    expect((form?.get('front_photo') as File).name).toBe('front.jpg');
    expect(form?.getAll('photos').map((f) => (f as File).name)).toEqual(['a.jpg', 'b.jpg']);
  });
});

describe('Invitation page', () => {
  it('shows the invitation and accepts it with a display name and password', async () => {
    let signedIn = false;
    const calls = stubFetch({
      'GET /api/v1/auth/me': () =>
        signedIn ? jsonResponse(200, studioUser('designer')) : jsonResponse(401, errorBody(401, 'not_authenticated', 'Sign in.')),
      'GET /api/v1/auth/csrf': csrf,
      'GET /api/v1/auth/invitations/tok123': () =>
        jsonResponse(200, { email: 'new@example.com', role: 'designer', expires_at: '2025-01-05T00:00:00Z' }),
      'POST /api/v1/auth/invitations/tok123': () => {
        signedIn = true;
        return jsonResponse(201, studioUser('designer', 'new@example.com'));
      },
    });
    renderAt('/studio/invite/tok123');
    expect((await screen.findByTestId('invite-email')).textContent).toBe('new@example.com');
    fireEvent.change(screen.getByLabelText('Display name'), { target: { value: 'Nina' } });
    fireEvent.change(screen.getByLabelText('Password'), { target: { value: 'long enough pw' } });
    fireEvent.change(screen.getByLabelText('Confirm password'), { target: { value: 'different' } });
    fireEvent.click(screen.getByRole('button', { name: 'Accept invitation' }));
    expect(screen.getByLabelText('Confirm password').getAttribute('aria-invalid')).toBe('true');
    fireEvent.change(screen.getByLabelText('Confirm password'), { target: { value: 'long enough pw' } });
    fireEvent.click(screen.getByRole('button', { name: 'Accept invitation' }));
    expect(await screen.findByTestId('role')).toBeTruthy();
    expect(window.location.pathname).toBe('/studio/');
    expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ password: 'long enough pw', display_name: 'Nina' });
  });

  it('explains an invalid invitation', async () => {
    stubFetch({
      'GET /api/v1/auth/me': () => jsonResponse(401, errorBody(401, 'not_authenticated', 'Sign in.')),
      'GET /api/v1/auth/invitations/bad': () =>
        jsonResponse(400, errorBody(400, 'invalid', 'Invalid.', { token: ['This invitation is invalid, expired or already used.'] })),
    });
    renderAt('/studio/invite/bad');
    expect((await screen.findByRole('alert')).textContent).toContain('This invitation is invalid, expired or already used.');
  });
});
