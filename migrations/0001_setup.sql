-- Shared building blocks for every table that follows.

-- Keeps updated_at honest without every UPDATE having to remember it.
create function set_updated_at() returns trigger
language plpgsql as $$
begin
    new.updated_at = now();
    return new;
end;
$$;

comment on function set_updated_at() is
    'Trigger function: stamps updated_at on every UPDATE of a row.';
