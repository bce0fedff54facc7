import { createContext, useCallback, useContext, useEffect, useMemo, useState } from 'react';
import type { ReactNode } from 'react';
import { DICTIONARIES, LANGUAGES } from './messages';
import type { Lang, MessageKey } from './messages';

export type { Lang, MessageKey } from './messages';
export { LANGUAGES } from './messages';

export const LANG_STORAGE_KEY = 'studio.lang';
export type Params = Record<string, string | number>;

export interface I18n {
  lang: Lang;
  setLang: (lang: Lang) => void;
  /** Translate `key`, replacing `{name}` with params.name. `key + '_one'` is used when n === 1. */
  t: (key: MessageKey, params?: Params) => string;
  formatDate: (iso: string | null | undefined) => string;
  formatNumber: (n: number) => string;
}

function isLang(value: unknown): value is Lang {
  return LANGUAGES.some((l) => l.code === value);
}

export function storedLang(): Lang {
  try {
    const value = window.localStorage.getItem(LANG_STORAGE_KEY);
    if (isLang(value)) return value;
  } catch {
    // Storage may be unavailable (privacy mode); fall back to English.
  }
  return 'en';
}

export function translate(lang: Lang, key: MessageKey, params?: Params): string {
  const dict = DICTIONARIES[lang] as Record<string, string>;
  let text = dict[key] ?? (DICTIONARIES.en as Record<string, string>)[key] ?? key;
  if (params && params.n === 1) {
    const one = dict[`${key}_one`];
    if (one) text = one;
  }
  if (params) {
    text = text.replace(/\{(\w+)\}/g, (whole, name: string) =>
      name in params ? String(params[name]) : whole,
    );
  }
  return text;
}

const I18nContext = createContext<I18n | null>(null);

export function I18nProvider({ children, initial }: { children: ReactNode; initial?: Lang }) {
  const [lang, setLangState] = useState<Lang>(() => initial ?? storedLang());

  useEffect(() => {
    document.documentElement.lang = LANGUAGES.find((l) => l.code === lang)?.htmlLang ?? 'en';
  }, [lang]);

  const setLang = useCallback((next: Lang) => {
    setLangState(next);
    try {
      window.localStorage.setItem(LANG_STORAGE_KEY, next);
    } catch {
      // Not persisted; the choice still applies to this page.
    }
  }, []);

  const value = useMemo<I18n>(() => {
    const locale = LANGUAGES.find((l) => l.code === lang)?.htmlLang ?? 'en';
    const dateFormat = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' });
    const numberFormat = new Intl.NumberFormat(locale);
    return {
      lang,
      setLang,
      t: (key, params) => translate(lang, key, params),
      formatDate: (iso) => {
        if (!iso) return '—';
        const date = new Date(iso);
        return Number.isNaN(date.getTime()) ? iso : dateFormat.format(date);
      },
      formatNumber: (n) => numberFormat.format(n),
    };
  }, [lang, setLang]);

  return <I18nContext.Provider value={value}>{children}</I18nContext.Provider>;
}

export function useI18n(): I18n {
  const ctx = useContext(I18nContext);
  if (!ctx) throw new Error('useI18n must be used inside <I18nProvider>.');
  return ctx;
}

/** The language switcher shown in the shell and on the public pages. */
export function LanguageSwitcher() {
  const { lang, setLang, t } = useI18n();
  return (
    <label className="lang-switch">
      <span>{t('lang.label')}</span>
      <select value={lang} onChange={(e) => isLang(e.target.value) && setLang(e.target.value)}>
        {LANGUAGES.map((l) => (
          <option key={l.code} value={l.code} lang={l.htmlLang}>
            {l.name}
          </option>
        ))}
      </select>
    </label>
  );
}
