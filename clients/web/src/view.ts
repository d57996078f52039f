// The chat screen: rooms on the left, the open room in the middle, a thread or the members on
// the right. Rendered from `chat.state` on every change; messages are a keyed list, so an
// update re-renders only the messages it touched.
import type { Message, Role, Room, UserRef } from '@huddle/types';
import * as chat from './chat';
import { state, type RoomState } from './chat';
import { byId, fill, h, syncList, time } from './dom';

const EMOJIS = ['👍', '❤️', '😂', '🎉', '👀', '🙏'];

/** What only the view cares about. */
const ui = {
  picker: null as string | null,
  confirmDelete: null as string | null,
  side: null as 'members' | 'thread' | null,
  modal: null as 'room' | 'browse' | 'dm' | null,
  members: [] as { user: UserRef; role: Role }[],
  directory: [] as Room[],
  drafts: new Map<string, string>(),
  shownRoom: null as string | null,
};

/** Builds the screen once; `render` fills it in. */
export function mount(root: HTMLElement, onLogout: () => void): void {
  const composer = h('textarea', {
    id: 'composer-input',
    'data-testid': 'composer-input',
    rows: 2,
    placeholder: 'Write a message (Enter sends, Shift+Enter for a new line)',
    oninput: () => {
      const rs = active();
      if (!rs) return;
      ui.drafts.set(rs.room.id, composer.value);
      if (composer.value.trim()) chat.typing(rs);
    },
    onkeydown: (e: Event) => submitOnEnter(e as KeyboardEvent, () => sendFromComposer()),
  }) as HTMLTextAreaElement;

  const sendFromComposer = () => {
    const rs = active();
    const body = composer.value.trim();
    if (!rs || !body) return;
    composer.value = '';
    ui.drafts.delete(rs.room.id);
    chat.send(rs, body).catch((err: Error) => {
      composer.value = body;
      chat.notify(err.message);
    });
  };

  fill(
    root,
    h(
      'header',
      { class: 'topbar' },
      h('span', { class: 'brand' }, 'Huddle'),
      h('span', { id: 'workspace-name', class: 'workspace', 'data-testid': 'workspace-name' }),
      h('span', { id: 'conn-status', class: 'conn', 'data-testid': 'conn-status' }),
      h('span', { class: 'spacer' }),
      h('span', { id: 'me', class: 'me', 'data-testid': 'me' }),
      h('button', { type: 'button', class: 'link', 'data-testid': 'logout', onclick: onLogout }, 'Log out'),
    ),
    h(
      'div',
      { class: 'layout' },
      h(
        'nav',
        { class: 'sidebar' },
        h(
          'div',
          { class: 'side-head' },
          h('h2', {}, 'Rooms'),
          h('button', { type: 'button', class: 'icon', title: 'New room', 'data-testid': 'new-room', onclick: () => openModal('room') }, '+'),
          h('button', { type: 'button', class: 'icon', title: 'Browse public rooms', 'data-testid': 'browse-rooms', onclick: () => openModal('browse') }, '☰'),
          h('button', { type: 'button', class: 'icon', title: 'Refresh', 'data-testid': 'rooms-refresh', onclick: () => void chat.refreshRooms().catch(() => {}) }, '↻'),
        ),
        h('ul', { id: 'room-list', class: 'rooms', 'data-testid': 'room-list' }),
        h(
          'div',
          { class: 'side-head' },
          h('h2', {}, 'Direct messages'),
          h('button', { type: 'button', class: 'icon', title: 'New direct message', 'data-testid': 'new-dm', onclick: () => openModal('dm') }, '+'),
        ),
        h('ul', { id: 'dm-list', class: 'rooms', 'data-testid': 'dm-list' }),
      ),
      h(
        'main',
        { class: 'chat' },
        h('div', { id: 'room-head', class: 'room-head' }),
        h(
          'div',
          { id: 'scroller', class: 'scroller', 'data-testid': 'message-scroller' },
          h('div', { id: 'older', class: 'older' }),
          h('div', { id: 'message-list', class: 'messages', 'data-testid': 'message-list' }),
        ),
        h('div', { id: 'typing', class: 'typing', 'data-testid': 'typing-indicator', 'aria-live': 'polite' }),
        h(
          'form',
          {
            id: 'composer',
            class: 'composer',
            onsubmit: (e: Event) => {
              e.preventDefault();
              sendFromComposer();
            },
          },
          composer,
          h('button', { type: 'submit', 'data-testid': 'composer-send' }, 'Send'),
        ),
      ),
      h('aside', { id: 'side', class: 'side', hidden: true }),
    ),
    h('div', { id: 'modal', class: 'modal', hidden: true }),
    h('div', { id: 'notices', class: 'notices', 'data-testid': 'notices', 'aria-live': 'polite' }),
  );
  chat.onNotice(toast);
  chat.onChange(render);
}

function active(): RoomState | undefined {
  return state.active ? state.rooms.get(state.active) : undefined;
}

function submitOnEnter(e: KeyboardEvent, submit: () => void): void {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    submit();
  }
}

export function toast(text: string): void {
  const note = h('div', { class: 'notice', 'data-testid': 'notice', role: 'status' }, text);
  byId('notices').appendChild(note);
  setTimeout(() => note.remove(), 6000);
}

function failed(err: unknown): void {
  toast((err as Error).message);
}

// ------------------------------------------------------------------ render

function render(): void {
  const me = state.me;
  fill(byId('me'), me ? `${me.display_name} (@${me.username})` : '');
  fill(byId('workspace-name'), state.workspaceName);
  const conn = byId('conn-status');
  conn.dataset.state = state.connection;
  fill(conn, { online: 'online', connecting: 'connecting…', offline: 'offline' }[state.connection]);
  renderRoomLists();
  renderRoom();
  renderSide();
}

function renderRoomLists(): void {
  const rooms = [...state.rooms.values()].sort((a, b) => chat.roomLabel(a).localeCompare(chat.roomLabel(b)));
  const item = (rs: RoomState) =>
    h(
      'li',
      {},
      h(
        'button',
        {
          type: 'button',
          class: `room${rs.room.id === state.active ? ' active' : ''}${rs.unread ? ' unread' : ''}`,
          'data-testid': 'room-item',
          'data-room-id': rs.room.id,
          'data-room-name': rs.room.visibility === 'direct' ? chat.dmPeer(rs)?.username ?? '' : rs.room.name,
          onclick: () => chat.open(rs.room.id),
        },
        h('span', { class: 'label' }, chat.roomLabel(rs), rs.room.visibility === 'private' ? ' 🔒' : ''),
        rs.mentions > 0 && h('span', { class: 'badge mention', 'data-testid': 'room-mentions', title: 'mentions' }, `@${rs.mentions}`),
        rs.unread > 0 && h('span', { class: 'badge', 'data-testid': 'room-unread', title: 'unread' }, rs.unread),
      ),
    );
  fill(byId('room-list'), ...rooms.filter((r) => r.room.visibility !== 'direct').map(item));
  fill(byId('dm-list'), ...rooms.filter((r) => r.room.visibility === 'direct').map(item));
}

function renderRoom(): void {
  const rs = active();
  const head = byId('room-head');
  const list = byId('message-list');
  const scroller = byId('scroller');
  const composer = byId<HTMLTextAreaElement>('composer-input');
  if (!rs) {
    fill(head, h('h1', {}, 'No room yet'), h('p', { class: 'muted' }, 'Create a room or browse the public ones.'));
    fill(list);
    fill(byId('older'));
    fill(byId('typing'));
    composer.disabled = true;
    return;
  }
  const switched = ui.shownRoom !== rs.room.id;
  if (switched) {
    ui.shownRoom = rs.room.id;
    composer.value = ui.drafts.get(rs.room.id) ?? '';
    ui.picker = null;
    ui.confirmDelete = null;
  }
  composer.disabled = false;

  const online = [...rs.online.values()].sort((a, b) => a.username.localeCompare(b.username));
  fill(
    head,
    h(
      'div',
      { class: 'title' },
      h('h1', { 'data-testid': 'room-title' }, chat.roomLabel(rs)),
      rs.room.topic && h('span', { class: 'topic' }, rs.room.topic),
    ),
    h(
      'div',
      { class: 'online', 'data-testid': 'online-list', title: 'Online in this room' },
      ...online.map((u) =>
        h('span', { class: 'presence', 'data-testid': 'online-user', 'data-username': u.username }, u.display_name),
      ),
    ),
    rs.room.visibility !== 'direct' &&
      h('button', { type: 'button', 'data-testid': 'members-toggle', onclick: () => toggleMembers(rs) }, 'Members'),
    rs.role !== 'owner' &&
      rs.room.visibility !== 'direct' &&
      h('button', { type: 'button', 'data-testid': 'leave-room', onclick: () => void chat.leave(rs).catch(failed) }, 'Leave'),
  );

  fill(
    byId('older'),
    rs.hasOlder &&
      h(
        'button',
        {
          type: 'button',
          class: 'link',
          'data-testid': 'load-older',
          onclick: () => {
            const fromBottom = scroller.scrollHeight - scroller.scrollTop;
            chat.loadOlder(rs).then(() => {
              // Keep what was on screen where it was, above the page just added.
              requestAnimationFrame(() => {
                scroller.scrollTop = scroller.scrollHeight - fromBottom;
              });
            }, failed);
          },
        },
        'Load older messages',
      ),
  );

  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
  type Row = { kind: 'm'; m: Message } | { kind: 'n'; key: string; body: string };
  const rows: Row[] = [];
  const notices = [...rs.notices];
  for (const m of chat.timeline(rs)) {
    while (notices.length && notices[0]!.afterSeq < m.seq) rows.push({ kind: 'n', ...notices.shift()! });
    rows.push({ kind: 'm', m });
  }
  for (const n of notices) rows.push({ kind: 'n', ...n });
  syncList(
    list,
    rows,
    (r) => (r.kind === 'm' ? r.m.id : `n-${r.key}`),
    (r) => (r.kind === 'm' ? messageVersion(r.m) : ''),
    (r) => (r.kind === 'm' ? messageView(rs, r.m, false) : h('div', { class: 'system', 'data-testid': 'system-notice' }, r.body)),
  );
  if (switched || atBottom) scroller.scrollTop = scroller.scrollHeight;

  const typing = [...rs.typing.values()].map((t) => t.user.display_name);
  fill(
    byId('typing'),
    typing.length === 0 ? '' : `${typing.join(', ')} ${typing.length === 1 ? 'is' : 'are'} typing…`,
  );
}

/** Everything a message's element shows, as a string: unchanged, it is not rebuilt. */
function messageVersion(m: Message): string {
  const editing = state.editing?.id === m.id ? 'e' : '';
  return `${m.rev}|${editing}|${ui.picker === m.id}|${ui.confirmDelete === m.id}|${(m.my_reactions ?? []).join()}`;
}

function messageView(rs: RoomState, m: Message, inThread: boolean): HTMLElement {
  const mine = m.sender.id === state.me?.id;
  const deleted = m.deleted_at !== null;
  const manager = rs.role === 'owner' || rs.role === 'moderator' || state.me?.is_admin === true;
  const editing = state.editing?.id === m.id;
  const actions = !deleted &&
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', title: 'React', 'data-testid': 'message-react', onclick: () => togglePicker(m.id) }, '☺'),
      !inThread &&
        !m.thread_root_id &&
        h('button', { type: 'button', title: 'Reply in thread', 'data-testid': 'message-thread', onclick: () => openThread(rs, m.id) }, '💬'),
      mine &&
        h('button', { type: 'button', title: 'Edit', 'data-testid': 'message-edit', onclick: () => startEdit(m) }, '✎'),
      (mine || manager) &&
        (ui.confirmDelete === m.id
          ? h('button', { type: 'button', class: 'danger', 'data-testid': 'delete-confirm', onclick: () => confirmDelete(rs, m.id) }, 'Delete?')
          : h('button', { type: 'button', title: 'Delete', 'data-testid': 'message-delete', onclick: () => askDelete(m.id) }, '🗑')),
    );
  return h(
    'article',
    {
      // `busy`: the toolbar stays up while its picker or delete confirmation is open.
      class: `msg${mine ? ' mine' : ''}${deleted ? ' deleted' : ''}${mentionsMe(m) ? ' mentioned' : ''}${
        ui.picker === m.id || ui.confirmDelete === m.id ? ' busy' : ''
      }`,
      'data-testid': inThread ? 'thread-message' : 'message',
      'data-id': m.id,
      'data-seq': m.seq,
      'data-deleted': deleted,
    },
    h(
      'div',
      { class: 'meta' },
      h('span', { class: 'sender', 'data-testid': 'message-sender' }, m.sender.display_name),
      h('time', { datetime: m.created_at, title: m.created_at }, time(m.created_at)),
      m.edited_at && !deleted && h('span', { class: 'muted', 'data-testid': 'message-edited', title: m.edited_at }, '(edited)'),
    ),
    m.reply_to &&
      h('div', { class: 'quote', 'data-testid': 'reply-quote' }, `${m.reply_to.sender.display_name}: `, m.reply_to.body || '(deleted)'),
    deleted
      ? h('div', { class: 'body muted', 'data-testid': 'message-deleted' }, 'This message was deleted.')
      : editing
        ? editor(rs, m)
        : h('div', { class: 'body', 'data-testid': 'message-body' }, ...withMentions(m)),
    m.reactions.length > 0 &&
      h(
        'div',
        { class: 'reactions' },
        ...m.reactions.map((r) => {
          const own = (m.my_reactions ?? []).includes(r.emoji);
          return h(
            'button',
            {
              type: 'button',
              class: `reaction${own ? ' own' : ''}`,
              'data-testid': 'reaction',
              'data-emoji': r.emoji,
              'data-mine': own ? 'true' : 'false',
              'aria-pressed': own ? 'true' : 'false',
              onclick: () => void chat.react(rs, m, r.emoji).catch(failed),
            },
            `${r.emoji} `,
            h('span', { 'data-testid': 'reaction-count' }, r.count),
          );
        }),
      ),
    !inThread &&
      m.thread &&
      h(
        'button',
        { type: 'button', class: 'link thread-summary', 'data-testid': 'thread-summary', onclick: () => openThread(rs, m.id) },
        `${m.thread.reply_count} ${m.thread.reply_count === 1 ? 'reply' : 'replies'}`,
        m.thread.last_reply_at && ` · last ${time(m.thread.last_reply_at)}`,
      ),
    actions,
    ui.picker === m.id &&
      h(
        'div',
        { class: 'picker', 'data-testid': 'emoji-picker' },
        ...EMOJIS.map((e) =>
          h(
            'button',
            {
              type: 'button',
              'data-testid': 'emoji-option',
              'data-emoji': e,
              onclick: () => {
                ui.picker = null;
                chat.react(rs, m, e).catch(failed);
                chat.changed();
              },
            },
            e,
          ),
        ),
      ),
  );
}

function mentionsMe(m: Message): boolean {
  return m.mentions.some((u) => u.id === state.me?.id);
}

/** The body as text, with each resolved `@username` set apart. */
function withMentions(m: Message): (string | HTMLElement)[] {
  if (m.mentions.length === 0) return [m.body];
  const names = m.mentions.map((u) => u.username.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&'));
  const parts = m.body.split(new RegExp(`(@(?:${names.join('|')}))(?![A-Za-z0-9_])`, 'i'));
  return parts.map((part, i) =>
    i % 2 === 1 ? h('span', { class: `mention${part.slice(1).toLowerCase() === state.me?.username.toLowerCase() ? ' me' : ''}` }, part) : part,
  );
}

function editor(rs: RoomState, m: Message): HTMLElement {
  const save = () => {
    const body = input.value.trim();
    if (!body) return;
    chat.edit(rs, m.id, body).catch(failed);
  };
  const cancel = () => {
    state.editing = null;
    chat.changed();
  };
  const input = h('textarea', {
    class: 'edit',
    'data-testid': 'edit-input',
    rows: 2,
    value: state.editing?.draft ?? m.body,
    oninput: () => {
      if (state.editing) state.editing.draft = input.value;
    },
    onkeydown: (e: Event) => {
      if ((e as KeyboardEvent).key === 'Escape') cancel();
      else submitOnEnter(e as KeyboardEvent, save);
    },
  }) as HTMLTextAreaElement;
  requestAnimationFrame(() => input.focus());
  return h(
    'div',
    { class: 'editing' },
    input,
    h('button', { type: 'button', 'data-testid': 'edit-save', onclick: save }, 'Save'),
    h('button', { type: 'button', class: 'link', 'data-testid': 'edit-cancel', onclick: cancel }, 'Cancel'),
  );
}

function togglePicker(id: string): void {
  ui.picker = ui.picker === id ? null : id;
  chat.changed();
}

function startEdit(m: Message): void {
  state.editing = { id: m.id, draft: m.body };
  chat.changed();
}

function askDelete(id: string): void {
  ui.confirmDelete = id;
  chat.changed();
  setTimeout(() => {
    if (ui.confirmDelete === id) {
      ui.confirmDelete = null;
      chat.changed();
    }
  }, 4000);
}

function confirmDelete(rs: RoomState, id: string): void {
  ui.confirmDelete = null;
  chat.remove(rs, id).catch(failed);
  chat.changed();
}

function openThread(rs: RoomState, rootId: string): void {
  ui.side = 'thread';
  chat.openThread(rs, rootId).catch(failed);
}

// ------------------------------------------------------------------ the side panel

function toggleMembers(rs: RoomState): void {
  if (ui.side === 'members') {
    ui.side = null;
    chat.changed();
    return;
  }
  ui.side = 'members';
  ui.members = [];
  chat.changed();
  reloadMembers(rs);
}

function reloadMembers(rs: RoomState): void {
  chat.members(rs).then((list) => {
    ui.members = list;
    chat.changed();
  }, failed);
}

function renderSide(): void {
  const side = byId('side');
  const rs = active();
  const thread = state.thread;
  if (ui.side === 'thread' && (!thread || !rs || thread.roomId !== rs.room.id)) ui.side = null;
  if (ui.side === 'members' && (!rs || rs.room.visibility === 'direct')) ui.side = null;
  side.hidden = ui.side === null;
  if (!rs || ui.side === null) {
    delete side.dataset.panel;
    side.replaceChildren();
    return;
  }
  if (ui.side === 'thread' && thread) renderThread(side, rs, thread.rootId);
  if (ui.side === 'members') renderMembers(side, rs);
}

function renderThread(side: HTMLElement, rs: RoomState, rootId: string): void {
  // The panel's frame (and its reply box, with whatever is typed in it) is built once per root.
  if (side.dataset.panel !== `thread:${rootId}`) {
    side.dataset.panel = `thread:${rootId}`;
    const input = h('textarea', {
      rows: 2,
      'data-testid': 'thread-input',
      placeholder: 'Reply in the thread',
      oninput: () => chat.typing(rs),
      onkeydown: (e: Event) => submitOnEnter(e as KeyboardEvent, reply),
    }) as HTMLTextAreaElement;
    function reply(): void {
      const body = input.value.trim();
      if (!body) return;
      input.value = '';
      chat.send(rs, body, rootId).catch((err: Error) => {
        input.value = body;
        failed(err);
      });
    }
    fill(
      side,
      h(
        'section',
        { class: 'panel', 'data-testid': 'thread-panel' },
        h(
          'div',
          { class: 'panel-head' },
          h('h2', {}, 'Thread'),
          h('button', {
            type: 'button',
            class: 'icon',
            title: 'Close',
            'data-testid': 'thread-close',
            onclick: () => {
              ui.side = null;
              state.thread = null;
              chat.changed();
            },
          }, '×'),
        ),
        h('div', { id: 'thread-root', 'data-testid': 'thread-root' }),
        h('div', { id: 'thread-list', class: 'messages' }),
        h(
          'form',
          {
            class: 'composer',
            onsubmit: (e: Event) => {
              e.preventDefault();
              reply();
            },
          },
          input,
          h('button', { type: 'submit', 'data-testid': 'thread-send' }, 'Reply'),
        ),
      ),
    );
  }
  const root = rs.messages.get(rootId);
  const rootBox = byId('thread-root');
  const version = root ? messageVersion(root) : 'none';
  if (rootBox.dataset.version !== version) {
    rootBox.dataset.version = version;
    fill(rootBox, root ? messageView(rs, root, true) : h('p', { class: 'muted' }, 'Loading…'));
  }
  syncList(byId('thread-list'), chat.threadReplies(rs, rootId), (m) => m.id, messageVersion, (m) => messageView(rs, m, true));
}

function renderMembers(side: HTMLElement, rs: RoomState): void {
  const managing = rs.role === 'owner' || rs.role === 'moderator';
  // The frame (with the add form and whatever is typed in it) is built once per room.
  if (side.dataset.panel !== `members:${rs.room.id}`) {
    side.dataset.panel = `members:${rs.room.id}`;
    const input = h('input', {
      'data-testid': 'member-add-input',
      placeholder: 'username or user id',
      list: 'known-users',
      autocomplete: 'off',
    }) as HTMLInputElement;
    const role = h(
      'select',
      { 'data-testid': 'member-add-role' },
      h('option', { value: 'member' }, 'member'),
      rs.role === 'owner' && h('option', { value: 'moderator' }, 'moderator'),
    ) as HTMLSelectElement;
    const add = (e: Event) => {
      e.preventDefault();
      const user = chat.resolveUser(input.value);
      if (!user) {
        toast(`Unknown user "${input.value}": ask them to say hello in a room you share, or paste their user id.`);
        return;
      }
      chat.addMember(rs, user, role.value as 'member' | 'moderator').then(() => {
        input.value = '';
        reloadMembers(rs);
      }, failed);
    };
    fill(
      side,
      h(
        'section',
        { class: 'panel', 'data-testid': 'members-panel' },
        h(
          'div',
          { class: 'panel-head' },
          h('h2', {}, 'Members'),
          h('button', { type: 'button', class: 'icon', title: 'Close', onclick: () => toggleMembers(rs) }, '×'),
        ),
        rs.room.visibility === 'public' &&
          h('p', { class: 'muted' }, 'A public room: everyone in the workspace may read and write; members only have a role.'),
        h('ul', { id: 'member-list', class: 'members' }),
        managing &&
          h(
            'form',
            { class: 'add-member', onsubmit: add },
            input,
            role,
            h('button', { type: 'submit', 'data-testid': 'member-add-submit' }, 'Add'),
            h('datalist', { id: 'known-users' }),
          ),
        h('p', { class: 'muted small' }, `Your user id: ${state.me?.id ?? ''}`),
      ),
    );
  }
  const known = document.getElementById('known-users');
  if (known) fill(known, ...[...state.known.values()].map((u) => h('option', { value: u.username })));
  fill(
    byId('member-list'),
    ...ui.members.map((m) =>
      h(
        'li',
        { 'data-testid': 'member-item', 'data-username': m.user.username },
        h('span', { class: rs.online.has(m.user.id) ? 'dot on' : 'dot', title: rs.online.has(m.user.id) ? 'online' : 'offline' }),
        h('span', { class: 'name' }, m.user.display_name),
        h('span', { class: 'muted' }, ` @${m.user.username} · ${m.role}`),
        m.user.id !== state.me?.id &&
          h('button', { type: 'button', class: 'link', 'data-testid': 'member-message', onclick: () => void chat.directRoom(m.user).catch(failed) }, 'Message'),
        // The owner removes anyone but themselves; a moderator, plain members.
        managing &&
          m.role !== 'owner' &&
          m.user.id !== state.me?.id &&
          (rs.role === 'owner' || m.role === 'member') &&
          h(
            'button',
            {
              type: 'button',
              class: 'link danger',
              'data-testid': 'member-remove',
              onclick: () => void chat.removeMember(rs, m.user.id).then(() => reloadMembers(rs), failed),
            },
            'Remove',
          ),
      ),
    ),
  );
}

// ------------------------------------------------------------------ dialogs

function openModal(kind: 'room' | 'browse' | 'dm'): void {
  ui.modal = kind;
  const modal = byId('modal');
  modal.hidden = false;
  const close = () => {
    ui.modal = null;
    modal.hidden = true;
    modal.replaceChildren();
  };
  const error = h('p', { class: 'error', 'data-testid': 'modal-error' });
  const guard = (work: Promise<unknown>) =>
    work.then(close, (err: Error) => {
      fill(error, err.message);
    });
  const frame = (title: string, ...body: HTMLElement[]) =>
    fill(
      modal,
      h(
        'div',
        { class: 'dialog', role: 'dialog', 'aria-label': title, 'data-testid': `dialog-${kind}` },
        h('div', { class: 'panel-head' }, h('h2', {}, title), h('button', { type: 'button', class: 'icon', title: 'Close', 'data-testid': 'dialog-close', onclick: close }, '×')),
        ...body,
        error,
      ),
    );

  if (kind === 'room') {
    const name = h('input', { 'data-testid': 'new-room-name', required: true, placeholder: 'name: a-z 0-9 _ -', pattern: '[a-z0-9_\\-]{1,64}' }) as HTMLInputElement;
    const visibility = h('select', { 'data-testid': 'new-room-visibility' }, h('option', { value: 'public' }, 'public'), h('option', { value: 'private' }, 'private')) as HTMLSelectElement;
    const topic = h('input', { 'data-testid': 'new-room-topic', placeholder: 'topic (optional)', maxlength: 256 }) as HTMLInputElement;
    frame(
      'New room',
      h(
        'form',
        {
          class: 'stack',
          onsubmit: (e: Event) => {
            e.preventDefault();
            guard(chat.createRoom(name.value.trim(), visibility.value as 'public' | 'private', topic.value.trim()));
          },
        },
        h('label', {}, 'Name', name),
        h('label', {}, 'Visibility', visibility),
        h('label', {}, 'Topic', topic),
        h('button', { type: 'submit', 'data-testid': 'new-room-submit' }, 'Create'),
      ),
    );
    name.focus();
  } else if (kind === 'dm') {
    const to = h('input', { 'data-testid': 'dm-to', required: true, placeholder: 'username', list: 'dm-known' }) as HTMLInputElement;
    const body = h('textarea', { 'data-testid': 'dm-body', required: true, rows: 3, placeholder: 'First message' }) as HTMLTextAreaElement;
    frame(
      'New direct message',
      h(
        'form',
        {
          class: 'stack',
          onsubmit: (e: Event) => {
            e.preventDefault();
            guard(chat.directMessage(to.value.trim().replace(/^@/, ''), body.value.trim()));
          },
        },
        h('label', {}, 'To', to),
        h('datalist', { id: 'dm-known' }, ...[...state.known.values()].map((u) => h('option', { value: u.username }))),
        h('label', {}, 'Message', body),
        h('button', { type: 'submit', 'data-testid': 'dm-submit' }, 'Send'),
      ),
    );
    to.focus();
  } else {
    const list = h('ul', { class: 'directory', 'data-testid': 'directory' }, h('li', { class: 'muted' }, 'Loading…'));
    frame('Public rooms', list);
    loadDirectory(list, close).catch((err: Error) => fill(error, err.message));
  }
}

/** Every public room, 200 at a time (`next` pages on). */
async function loadDirectory(list: HTMLElement, close: () => void): Promise<void> {
  ui.directory = [];
  let after: string | undefined;
  do {
    const page = await chat.publicRooms(after);
    ui.directory.push(...page.rooms);
    after = page.next;
  } while (after);
  fill(
    list,
    ...ui.directory.map((room) => {
      const held = state.rooms.has(room.id);
      return h(
        'li',
        { 'data-testid': 'directory-item', 'data-room-name': room.name },
        h('span', { class: 'name' }, `#${room.name}`),
        room.topic && h('span', { class: 'muted' }, ` ${room.topic}`),
        h(
          'button',
          {
            type: 'button',
            'data-testid': 'directory-join',
            onclick: () => {
              close();
              if (held) chat.open(room.id);
              else chat.joinPublic(room).catch(failed);
            },
          },
          held ? 'Open' : 'Join',
        ),
      );
    }),
  );
  if (ui.directory.length === 0) fill(list, h('li', { class: 'muted' }, 'No public rooms yet.'));
}
