// Huddle's web client: the login screen, then the chat (view.ts) over the state and socket of
// chat.ts. Speaks only the wire contract: REST under /api and Socket.IO on the same origin.
import type { AuthResponse, WorkspaceSignupResponse } from '@huddle/types';
import * as api from './api';
import * as chat from './chat';
import { byId, fill, h } from './dom';
import * as view from './view';

type Mode = 'login' | 'register' | 'signup';

const root = byId('app');
// A message to show on the login screen after a reload (the session ended, or logged out).
const FLASH = 'huddle.flash';

api.whenSessionEnds((why) => {
  sessionStorage.setItem(FLASH, why);
  location.reload();
});

function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  return h('label', {}, label, input, hint && h('span', { class: 'hint' }, hint));
}

function showLogin(mode: Mode): void {
  document.title = 'Huddle';
  const error = h('p', { class: 'error', 'data-testid': 'auth-error', role: 'alert' }, sessionStorage.getItem(FLASH) ?? '');
  sessionStorage.removeItem(FLASH);
  const input = (testid: string, attrs: Record<string, string | boolean> = {}) =>
    h('input', { 'data-testid': testid, name: testid, ...attrs }) as HTMLInputElement;

  const workspace = input('auth-workspace', { placeholder: 'default', autocomplete: 'organization', pattern: '[a-z0-9\\-]{2,32}' });
  const workspaceName = input('auth-workspace-name', { required: true, maxlength: '64' });
  const username = input('auth-username', { required: true, autocomplete: 'username', minlength: '3', maxlength: '32' });
  const password = input('auth-password', {
    required: true,
    type: 'password',
    minlength: '8',
    autocomplete: mode === 'login' ? 'current-password' : 'new-password',
  });
  const displayName = input('auth-display-name', { maxlength: '64', autocomplete: 'name' });

  const submit = async (e: Event) => {
    e.preventDefault();
    fill(error);
    const slug = workspace.value.trim();
    try {
      if (mode === 'signup') {
        const body = {
          slug,
          name: workspaceName.value.trim(),
          owner: { username: username.value.trim(), password: password.value, ...(displayName.value.trim() ? { display_name: displayName.value.trim() } : {}) },
        };
        const res = await api.call<WorkspaceSignupResponse>('POST', '/api/workspaces', body, false);
        api.start(res, slug);
      } else {
        const body = {
          ...(slug ? { workspace: slug } : {}),
          username: username.value.trim(),
          password: password.value,
          ...(mode === 'register' && displayName.value.trim() ? { display_name: displayName.value.trim() } : {}),
        };
        const res = await api.call<AuthResponse>('POST', mode === 'login' ? '/api/auth/login' : '/api/auth/register', body, false);
        api.start(res, slug || 'default');
      }
      await showChat();
    } catch (err) {
      const e = err as api.ApiError;
      const why =
        e.code === 'forbidden' && mode === 'signup'
          ? 'Creating workspaces is not open on this server (WORKSPACE_SIGNUP).'
          : e.code === 'not_found' && mode === 'register'
            ? `There is no workspace "${slug}".`
            : e.fields
              ? Object.entries(e.fields).map(([f, why]) => `${f.replace('_', ' ')} ${why}`).join('; ')
              : e.message;
      fill(error, why);
    }
  };

  const tab = (m: Mode, label: string) =>
    h('button', { type: 'button', class: m === mode ? 'tab active' : 'tab', 'data-testid': `auth-mode-${m}`, 'aria-pressed': m === mode ? 'true' : 'false', onclick: () => showLogin(m) }, label);

  fill(
    root,
    h(
      'div',
      { class: 'auth' },
      h(
        'form',
        { class: 'card stack', 'data-testid': 'auth-form', onsubmit: (e: Event) => void submit(e) },
        h('h1', {}, 'Huddle'),
        h('div', { class: 'tabs' }, tab('login', 'Log in'), tab('register', 'Register'), tab('signup', 'New workspace')),
        mode === 'signup'
          ? [
              field('Workspace address', workspace, '2-32 of a-z 0-9 -'),
              field('Workspace name', workspaceName),
            ]
          : field('Workspace', workspace, 'Leave empty for the default workspace'),
        field('Username', username),
        field('Password', password, mode === 'login' ? undefined : 'At least 8 characters'),
        mode !== 'login' && field('Display name', displayName, 'Optional'),
        h('button', { type: 'submit', 'data-testid': 'auth-submit' }, { login: 'Log in', register: 'Create account', signup: 'Create workspace' }[mode]),
        error,
      ),
    ),
  );
  workspace.required = mode === 'signup';
  (mode === 'signup' ? workspace : username).focus();
}

async function showChat(): Promise<void> {
  view.mount(root, () => {
    void chat.logout().then(() => {
      sessionStorage.setItem(FLASH, 'You have logged out.');
      location.reload();
    });
  });
  try {
    await chat.boot();
  } catch (err) {
    // A stored session that no longer works (logged out elsewhere, server reset).
    api.clear();
    sessionStorage.setItem(FLASH, (err as Error).message);
    location.reload();
  }
}

if (api.hasSession()) void showChat();
else showLogin('login');
