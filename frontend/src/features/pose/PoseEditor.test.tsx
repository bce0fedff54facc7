import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { I18nProvider } from '../../i18n/I18nContext';
import { jsonResponse, stubFetch } from '../../test/fetchStub';
import { LIMBS, defaultKeypoints } from './openpose';
import { PoseEditor } from './PoseEditor';

const POSE_SHA = 'c'.repeat(64);

function setup() {
  document.cookie = 'csrftoken=tok; path=/';
  const calls = stubFetch({
    'POST /api/studio/assets/pose': () =>
      jsonResponse(201, {
        sha256: POSE_SHA,
        kind: 'pose',
        width: 512,
        height: 768,
        keypoints: null,
        image_url: `/api/studio/assets/${POSE_SHA}/image`,
        created_at: '2025-01-01T00:00:00Z',
      }),
  });
  const onSaved = vi.fn();
  render(
    <I18nProvider initial="en">
      <PoseEditor onSaved={onSaved} />
    </I18nProvider>,
  );
  return { calls, onSaved };
}

const point = (name: string) => screen.getByRole('button', { name });

describe('PoseEditor', () => {
  it('draws the 18 COCO keypoints in OpenPose colours and the 17 limbs', () => {
    setup();
    const circles = document.querySelectorAll('circle[data-keypoint]');
    expect(circles).toHaveLength(18);
    expect(point('Nose').getAttribute('fill')).toBe('rgb(255, 0, 0)');
    expect(point('Left ear').getAttribute('fill')).toBe('rgb(255, 0, 85)');
    expect(document.querySelectorAll('line[data-limb]')).toHaveLength(17);
    expect(point('Nose').getAttribute('tabindex')).toBe('0');
  });

  it('moves points with the keyboard and the mouse, toggles a limb and a keypoint, and posts the pose', async () => {
    const { calls, onSaved } = setup();
    const expected = defaultKeypoints(512, 768) as ([number, number] | null)[];

    // Keyboard: focus the nose, 3 px right, 10 px down (Shift), 1 px up.
    const nose = point('Nose');
    nose.focus();
    expect(document.activeElement).toBe(nose);
    fireEvent.keyDown(nose, { key: 'ArrowRight' });
    fireEvent.keyDown(nose, { key: 'ArrowRight' });
    fireEvent.keyDown(nose, { key: 'ArrowRight' });
    fireEvent.keyDown(nose, { key: 'ArrowDown', shiftKey: true });
    fireEvent.keyDown(nose, { key: 'ArrowUp' });
    const [nx, ny] = expected[0]!;
    expected[0] = [nx + 3, ny + 9];
    expect(nose.getAttribute('cx')).toBe(String(nx + 3));
    expect(nose.getAttribute('cy')).toBe(String(ny + 9));
    expect(screen.getByText(`Nose: ${nx + 3}, ${ny + 9}`)).toBeTruthy();

    // Mouse: the SVG is drawn at half size, so client (100, 200) is pose (200, 400).
    const svg = screen.getByTestId('pose-canvas');
    svg.getBoundingClientRect = () =>
      ({ left: 0, top: 0, width: 256, height: 384, right: 256, bottom: 384, x: 0, y: 0, toJSON: () => ({}) }) as DOMRect;
    const wrist = point('Right wrist');
    fireEvent.pointerDown(wrist, { pointerId: 1, clientX: 40, clientY: 200 });
    fireEvent.pointerMove(svg, { pointerId: 1, clientX: 100, clientY: 200 });
    fireEvent.pointerUp(svg, { pointerId: 1, clientX: 100, clientY: 200 });
    expected[4] = [200, 400];
    expect(wrist.getAttribute('cx')).toBe('200');
    expect(wrist.getAttribute('cy')).toBe('400');

    // Dragging off the canvas keeps the point inside it.
    fireEvent.pointerDown(point('Left ankle'), { pointerId: 2 });
    fireEvent.pointerMove(svg, { pointerId: 2, clientX: 999, clientY: -50 });
    fireEvent.pointerUp(svg, { pointerId: 2 });
    expected[13] = [511, 0];

    // Limb off: neck - nose; keypoint missing: left ear.
    fireEvent.click(screen.getByRole('checkbox', { name: 'Neck – Nose' }));
    expect(document.querySelector('line[data-limb="1-0"]')).toBeNull();
    fireEvent.click(screen.getByRole('checkbox', { name: 'Left ear missing' }));
    expect(screen.queryByRole('button', { name: 'Left ear' })).toBeNull();
    expected[17] = null;

    // Add a limb that is not in the standard set: left wrist - left hip.
    fireEvent.change(screen.getByLabelText('Limb from'), { target: { value: '7' } });
    fireEvent.change(screen.getByLabelText('Limb to'), { target: { value: '11' } });
    fireEvent.click(screen.getByRole('button', { name: 'Add limb' }));
    expect(document.querySelector('line[data-limb="7-11"]')).not.toBeNull();

    fireEvent.click(screen.getByRole('button', { name: 'Save pose' }));
    await waitFor(() => expect(onSaved).toHaveBeenCalledTimes(1));
    const post = calls.find((c) => c.path === '/api/studio/assets/pose');
    expect(post?.method).toBe('POST');
    expect(post?.headers['x-csrftoken']).toBe('tok');
    expect(post?.body).toEqual({
      pose: {
        width: 512,
        height: 768,
        keypoints: expected,
        limbs: [...LIMBS.filter(([a, b]) => !(a === 1 && b === 0)).map(([a, b]) => [a, b]), [7, 11]],
      },
    });
    expect(onSaved.mock.calls[0]?.[0]).toMatchObject({ sha256: POSE_SHA, kind: 'pose' });
  });

  it('omits limbs when they are the standard set and restores a keypoint marked missing', async () => {
    const { calls } = setup();
    const box = screen.getByRole('checkbox', { name: 'Nose missing' });
    fireEvent.click(box);
    fireEvent.click(box);
    expect(point('Nose')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Save pose' }));
    await waitFor(() => expect(calls).toHaveLength(1));
    expect(calls[0]?.body).toEqual({ pose: { width: 512, height: 768, keypoints: defaultKeypoints(512, 768) } });
  });
});
