import { fireEvent, render, screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { App } from '../App';
import { jsonResponse, stubFetch } from '../test/fetchStub';
import { studioUser } from '../test/studioFixtures';
import { LANG_STORAGE_KEY, translate } from './I18nContext';
import { en, zh } from './messages';

describe('translate', () => {
  it('interpolates parameters and uses the _one form for n = 1', () => {
    expect(translate('en', 'home.welcome', { name: 'Dana' })).toBe('Welcome, Dana');
    expect(translate('en', 'grid.jobsAhead', { n: 4 })).toBe('4 jobs ahead of this preview in the queue.');
    expect(translate('en', 'grid.jobsAhead', { n: 1 })).toBe('1 job ahead of this preview in the queue.');
    expect(translate('zh', 'grid.jobsAhead', { n: 4 })).toBe('队列中此预览前面还有 4 个任务。');
    // {subject} is text, not a parameter.
    expect(translate('en', 'spec.promptHint')).toContain('{subject}');
  });

  it('has a non-empty Chinese text for every English key', () => {
    expect(Object.keys(zh).sort()).toEqual(Object.keys(en).sort());
    for (const [key, text] of Object.entries(zh)) expect(text, key).not.toBe('');
  });
});

describe('Language switcher', () => {
  it('switches the shell to Simplified Chinese, persists the choice and restores it', async () => {
    stubFetch({ 'GET /api/v1/auth/me': () => jsonResponse(200, studioUser('reviewer')) });
    window.history.pushState(null, '', '/studio/');
    const first = render(<App />);

    const nav = await screen.findByRole('navigation', { name: 'Main' });
    expect(within(nav).getByRole('link', { name: 'Review queue' })).toBeTruthy();
    expect(document.documentElement.lang).toBe('en');

    fireEvent.change(screen.getByLabelText('Language'), { target: { value: 'zh' } });

    const zhNav = screen.getByRole('navigation', { name: '主导航' });
    expect(within(zhNav).getAllByRole('link').map((a) => a.textContent)).toEqual(['审核队列', '目录排序', '我的模板']);
    expect(screen.getByRole('button', { name: '退出登录' })).toBeTruthy();
    expect(screen.getByTestId('role').textContent).toBe('审核员');
    expect(screen.getByRole('heading', { level: 1 }).textContent).toBe('欢迎，reviewer');
    expect(document.documentElement.lang).toBe('zh-CN');
    expect(window.localStorage.getItem(LANG_STORAGE_KEY)).toBe('zh');

    first.unmount();
    render(<App />);
    expect(await screen.findByRole('navigation', { name: '主导航' })).toBeTruthy();
    expect((screen.getByLabelText('语言') as HTMLSelectElement).value).toBe('zh');

    fireEvent.change(screen.getByLabelText('语言'), { target: { value: 'en' } });
    expect(screen.getByRole('navigation', { name: 'Main' })).toBeTruthy();
    expect(window.localStorage.getItem(LANG_STORAGE_KEY)).toBe('en');
  });

  it('is on the sign-in page too', async () => {
    stubFetch({ 'GET /api/v1/auth/me': () => jsonResponse(401, { error: { status: 401, code: 'x', message: 'x' } }) });
    window.history.pushState(null, '', '/studio/login');
    render(<App />);
    fireEvent.change(await screen.findByLabelText('Language'), { target: { value: 'zh' } });
    expect(screen.getByRole('heading', { name: '登录' })).toBeTruthy();
    expect(screen.getByLabelText('邮箱')).toBeTruthy();
  });
});
