-- Webhooks: the product's endpoints that receive the event log, signed (Standard Webhooks).
--
-- Delivery is driven from the event log: each webhook keeps a cursor (the last position of its
-- workspace's log it has taken), and the worker turns the events past it into deliveries, at
-- least once, then retries failed ones with backoff for a day. Any node may run the worker:
-- rows are claimed with FOR UPDATE SKIP LOCKED.

create table webhooks (
    id            uuid primary key,
    workspace_id  uuid not null
                  constraint webhooks_workspace_id_fkey references workspaces (id) on delete cascade,
    url           text not null
                  constraint webhooks_url_length check (char_length(url) between 1 and 2048),
    -- Empty: every type.
    events        text[] not null default '{}',
    description   text
                  constraint webhooks_description_length check (char_length(description) <= 256),
    secret        bytea not null,
    active        boolean not null default true,
    event_cursor  bigint not null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create index webhooks_workspace_id_idx on webhooks (workspace_id);

create trigger webhooks_set_updated_at before update on webhooks
    for each row execute function set_updated_at();

comment on table webhooks is 'Endpoints of the product that receive the workspace''s events by POST, signed per the Standard Webhooks specification.';
comment on column webhooks.id is 'Webhook id (UUID).';
comment on column webhooks.workspace_id is 'The workspace whose events it receives.';
comment on column webhooks.url is 'Where events are POSTed: http(s), at most 2048 characters. Its host must not resolve to a loopback, private, link-local or metadata address unless WEBHOOK_ALLOW_PRIVATE=true.';
comment on column webhooks.events is 'The event types it receives; empty: all of them.';
comment on column webhooks.description is 'What it is for, as its owner wrote it (at most 256 characters).';
comment on column webhooks.secret is 'The signing key''s raw bytes (shown once, as whsec_ + base64). Kept in clear: signing needs it.';
comment on column webhooks.active is 'False: paused; nothing is delivered to it meanwhile. Set true again, it catches up from its cursor: the events of the pause are delivered then.';
comment on column webhooks.event_cursor is 'The position in the workspace''s event log up to which events have been turned into deliveries for this webhook.';
comment on column webhooks.created_at is 'When it was registered.';
comment on column webhooks.updated_at is 'Last change to the row (URL, events, active, cursor).';

create table webhook_deliveries (
    id              uuid primary key,
    webhook_id      uuid not null
                    constraint webhook_deliveries_webhook_id_fkey references webhooks (id) on delete cascade,
    workspace_id    uuid not null,
    event_position  bigint not null,
    event_id        uuid not null,
    status          text not null default 'pending'
                    constraint webhook_deliveries_status_known check (status in ('pending', 'delivered', 'failed')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_status     integer,
    last_latency_ms integer,
    last_error      text,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint webhook_deliveries_event_key unique (webhook_id, event_id)
);
-- The worker's claim: each webhook's due pending deliveries, oldest due first (a few per webhook
-- per round, however many are waiting).
create index webhook_deliveries_due_idx on webhook_deliveries (webhook_id, next_attempt_at)
    where status = 'pending';
create index webhook_deliveries_webhook_id_created_at_idx on webhook_deliveries (webhook_id, created_at);

create trigger webhook_deliveries_set_updated_at before update on webhook_deliveries
    for each row execute function set_updated_at();

comment on table webhook_deliveries is 'One event to deliver to one webhook: pending until a 2xx answer (delivered) or 24 hours of retries (failed).';
comment on column webhook_deliveries.id is 'Delivery id (UUID).';
comment on column webhook_deliveries.webhook_id is 'The webhook it goes to.';
comment on column webhook_deliveries.workspace_id is 'The workspace of the webhook and the event.';
comment on column webhook_deliveries.event_position is 'The event''s position in the workspace''s log.';
comment on column webhook_deliveries.event_id is 'The event''s id: the webhook-id header, by which receivers de-duplicate.';
comment on column webhook_deliveries.status is 'pending (not yet answered with 2xx), delivered, or failed (retries given up after 24 hours).';
comment on column webhook_deliveries.attempts is 'How many times it was POSTed.';
comment on column webhook_deliveries.next_attempt_at is 'When the worker may try it next (while pending); also its lease while an attempt is in flight.';
comment on column webhook_deliveries.last_status is 'The HTTP status of the last attempt; null if it got no answer.';
comment on column webhook_deliveries.last_latency_ms is 'How long the last attempt took, in milliseconds.';
comment on column webhook_deliveries.last_error is 'Why the last attempt failed (a non-2xx status, a timeout, a refused address...); null after a success.';
comment on column webhook_deliveries.created_at is 'When the event was taken for this webhook.';
comment on column webhook_deliveries.updated_at is 'Last change (an attempt, its outcome).';

create table webhook_attempts (
    id             bigint generated always as identity primary key,
    delivery_id    uuid not null
                   constraint webhook_attempts_delivery_id_fkey references webhook_deliveries (id) on delete cascade,
    -- The delivery's, so that a workspace's attempts are found (and kept apart) without a join.
    workspace_id   uuid not null,
    attempt        integer not null,
    at             timestamptz not null default now(),
    response_status integer,
    latency_ms     integer not null,
    error          text
);
create index webhook_attempts_delivery_id_idx on webhook_attempts (delivery_id);

comment on table webhook_attempts is 'Every POST of a delivery: when, the answer''s status, how long, and what went wrong. For admins reading with SQL.';
comment on column webhook_attempts.id is 'Order of writing.';
comment on column webhook_attempts.delivery_id is 'The delivery attempted.';
comment on column webhook_attempts.workspace_id is 'The workspace of the delivery''s webhook.';
comment on column webhook_attempts.attempt is '1 for the first POST of the delivery, 2 for the first retry, ...';
comment on column webhook_attempts.at is 'When the attempt ended.';
comment on column webhook_attempts.response_status is 'The HTTP status answered; null if none (timeout, refused, connection error).';
comment on column webhook_attempts.latency_ms is 'From sending the request to the end of the answer''s headers (or the failure), in milliseconds.';
comment on column webhook_attempts.error is 'Why it failed; null for a 2xx answer.';
