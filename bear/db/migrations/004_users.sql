-- The team: people who sign in, their API tokens, and the history of who changed what.
-- Passwords and tokens are stored only as argon2 hashes. A token's id is part of the token
-- ("bear_<id>_<secret>") so it is found without scanning; its secret is checked by the hash.
CREATE SEQUENCE users_id_seq START 1;
CREATE TABLE users (
    id BIGINT PRIMARY KEY DEFAULT nextval('users_id_seq'),
    name VARCHAR NOT NULL UNIQUE,
    email VARCHAR,
    role VARCHAR NOT NULL CHECK (role IN ('viewer', 'analyst', 'admin')),
    -- {"companies": [..], "regions": [..], "practices": [..], "groups": [..]}; empty: all
    scopes JSON NOT NULL DEFAULT '{}',
    password_hash VARCHAR,
    disabled BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    created_by VARCHAR NOT NULL
);

CREATE SEQUENCE api_tokens_id_seq START 1;
CREATE TABLE api_tokens (
    id BIGINT PRIMARY KEY DEFAULT nextval('api_tokens_id_seq'),
    user_id BIGINT NOT NULL,
    label VARCHAR NOT NULL DEFAULT '',
    token_hash VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    created_by VARCHAR NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP,
    revoked_by VARCHAR
);

-- Every change a person made to settings, rules, users and tokens: old, new, who, when.
CREATE SEQUENCE change_log_id_seq START 1;
CREATE TABLE change_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('change_log_id_seq'),
    changed_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    actor VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,      -- setting, rule, user, token, import
    target VARCHAR NOT NULL,    -- the setting name, rule id, user name, token id, file kind
    old_value JSON,
    new_value JSON
);
