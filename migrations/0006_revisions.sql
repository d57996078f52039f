-- Revisions: each room's second counter. `seq` numbers a room's messages; `rev` numbers every
-- change to its timeline (a new message now; edits, deletions, reactions and thread summaries
-- as they come), so a client that keeps the highest `rev` it has seen can ask for everything
-- that changed after it. Each message carries the `rev` of its latest change.
--
-- Until now the only change was a new message, so a v1 database's revisions are its seqs: one
-- rewrite of the messages table, once.

alter table rooms add column last_rev bigint not null default 0
    constraint rooms_last_rev_not_negative check (last_rev >= 0);
-- A backfill, not a change of the rooms: updated_at keeps its meaning.
alter table rooms disable trigger rooms_set_updated_at;
update rooms set last_rev = last_seq where last_seq > 0;
alter table rooms enable trigger rooms_set_updated_at;
comment on column rooms.last_rev is 'rev of the newest change in the room (0 when none). Every change to the timeline takes last_rev + 1.';

alter table messages add column rev bigint;
update messages set rev = seq;
alter table messages alter column rev set not null;
alter table messages add constraint messages_rev_positive check (rev >= 1);
-- One rev per change per room; also the index behind the change feed (messages after a rev, in
-- rev order).
alter table messages add constraint messages_room_rev_key unique (room_id, rev);
comment on column messages.rev is 'The room''s rev of the message''s latest change (its sending, until it changes). No two messages of a room share one.';
