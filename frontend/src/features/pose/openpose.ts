/** COCO-18 / OpenPose body model (mirrors engine/pose.py). */

export const KEYPOINT_NAMES = [
  'nose',
  'neck',
  'right_shoulder',
  'right_elbow',
  'right_wrist',
  'left_shoulder',
  'left_elbow',
  'left_wrist',
  'right_hip',
  'right_knee',
  'right_ankle',
  'left_hip',
  'left_knee',
  'left_ankle',
  'right_eye',
  'left_eye',
  'right_ear',
  'left_ear',
] as const;
export type KeypointName = (typeof KEYPOINT_NAMES)[number];
export const NUM_KEYPOINTS = 18;

/** The 17 limbs the OpenPose annotator draws, in drawing order. */
export const LIMBS: readonly (readonly [number, number])[] = [
  [1, 2],
  [1, 5],
  [2, 3],
  [3, 4],
  [5, 6],
  [6, 7],
  [1, 8],
  [8, 9],
  [9, 10],
  [1, 11],
  [11, 12],
  [12, 13],
  [1, 0],
  [0, 14],
  [14, 16],
  [0, 15],
  [15, 17],
];

/** OpenPose colours: keypoint i, and standard limb i (drawn at 0.6 opacity). */
export const COLORS: readonly (readonly [number, number, number])[] = [
  [255, 0, 0],
  [255, 85, 0],
  [255, 170, 0],
  [255, 255, 0],
  [170, 255, 0],
  [85, 255, 0],
  [0, 255, 0],
  [0, 255, 85],
  [0, 255, 170],
  [0, 255, 255],
  [0, 170, 255],
  [0, 85, 255],
  [0, 0, 255],
  [85, 0, 255],
  [170, 0, 255],
  [255, 0, 255],
  [255, 0, 170],
  [255, 0, 85],
];

export const rgb = (c: readonly [number, number, number]) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;

export function limbColor(a: number, b: number): string {
  const index = LIMBS.findIndex(([x, y]) => (x === a && y === b) || (x === b && y === a));
  if (index >= 0) return rgb(COLORS[index]!);
  const ca = COLORS[a]!;
  const cb = COLORS[b]!;
  return rgb([(ca[0] + cb[0]) >> 1, (ca[1] + cb[1]) >> 1, (ca[2] + cb[2]) >> 1]);
}

/** A standing figure, as fractions of the canvas. */
const DEFAULT_FRACTIONS: readonly (readonly [number, number])[] = [
  [0.5, 0.16],
  [0.5, 0.25],
  [0.38, 0.26],
  [0.33, 0.4],
  [0.31, 0.53],
  [0.62, 0.26],
  [0.67, 0.4],
  [0.69, 0.53],
  [0.43, 0.54],
  [0.42, 0.72],
  [0.41, 0.9],
  [0.57, 0.54],
  [0.58, 0.72],
  [0.59, 0.9],
  [0.47, 0.14],
  [0.53, 0.14],
  [0.44, 0.15],
  [0.56, 0.15],
];

export type Point = [number, number];

export function defaultKeypoints(width: number, height: number): Point[] {
  return DEFAULT_FRACTIONS.map(([fx, fy]) => [Math.round(fx * width), Math.round(fy * height)]);
}

/** Keep a point on the canvas (the server wants 0 <= x < width, 0 <= y < height). */
export function clampPoint([x, y]: Point, width: number, height: number): Point {
  return [Math.min(Math.max(0, Math.round(x)), width - 1), Math.min(Math.max(0, Math.round(y)), height - 1)];
}
