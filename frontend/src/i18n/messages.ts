/**
 * Typed dictionaries. English is the reference: every other language must have exactly its keys
 * (TypeScript checks this). Parts live in ./messages/<area>.ts.
 */
import * as common from './messages/common';
import * as studio from './messages/studio';
import * as review from './messages/review';
import * as ops from './messages/ops';

export const en = { ...common.en, ...studio.en, ...review.en, ...ops.en };
export type MessageKey = keyof typeof en;
export const zh: Record<MessageKey, string> = { ...common.zh, ...studio.zh, ...review.zh, ...ops.zh };

export type Lang = 'en' | 'zh';
export const LANGUAGES: { code: Lang; name: string; htmlLang: string }[] = [
  { code: 'en', name: 'English', htmlLang: 'en' },
  { code: 'zh', name: '简体中文', htmlLang: 'zh-CN' },
];
export const DICTIONARIES: Record<Lang, Record<MessageKey, string>> = { en, zh };
