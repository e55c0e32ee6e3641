-- FlaskBB's tables and columns (flaskbb/user/models.py, flaskbb/plugins/models.py),
-- so the daemon and FlaskBB can share a database. users.password is wider than
-- FlaskBB's String(120): werkzeug's scrypt hashes are 162 characters.
CREATE TABLE groups (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL UNIQUE,
    description TEXT,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    super_mod BOOLEAN NOT NULL DEFAULT FALSE,
    mod BOOLEAN NOT NULL DEFAULT FALSE,
    guest BOOLEAN NOT NULL DEFAULT FALSE,
    banned BOOLEAN NOT NULL DEFAULT FALSE,
    mod_edituser BOOLEAN NOT NULL DEFAULT FALSE,
    mod_banuser BOOLEAN NOT NULL DEFAULT FALSE,
    editpost BOOLEAN NOT NULL DEFAULT TRUE,
    deletepost BOOLEAN NOT NULL DEFAULT FALSE,
    deletetopic BOOLEAN NOT NULL DEFAULT FALSE,
    posttopic BOOLEAN NOT NULL DEFAULT TRUE,
    postreply BOOLEAN NOT NULL DEFAULT TRUE,
    viewhidden BOOLEAN NOT NULL DEFAULT FALSE,
    makehidden BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(200) NOT NULL UNIQUE,
    email VARCHAR(200) NOT NULL UNIQUE,
    password VARCHAR(255),
    date_joined TIMESTAMP,
    lastseen TIMESTAMP,
    birthday TIMESTAMP,
    gender VARCHAR(10),
    website VARCHAR(200),
    location VARCHAR(100),
    signature TEXT,
    avatar VARCHAR(200),
    notes TEXT,
    last_failed_login TIMESTAMP,
    login_attempts INTEGER DEFAULT 0,
    activated BOOLEAN DEFAULT FALSE,
    theme VARCHAR(15),
    language VARCHAR(15) DEFAULT 'en',
    post_count INTEGER DEFAULT 0,
    primary_group_id INTEGER NOT NULL REFERENCES groups(id)
);

CREATE TABLE groups_users (
    user_id INTEGER REFERENCES users(id),
    group_id INTEGER REFERENCES groups(id),
    PRIMARY KEY (user_id, group_id)
);

CREATE TABLE plugin_registry (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL UNIQUE,
    enabled BOOLEAN DEFAULT TRUE
);

CREATE TABLE plugin_store (
    id SERIAL PRIMARY KEY,
    key VARCHAR(255) NOT NULL,
    value TEXT,
    value_type VARCHAR(20) NOT NULL DEFAULT 'string',
    extra TEXT,
    plugin_id INTEGER REFERENCES plugin_registry(id) ON DELETE CASCADE,
    name VARCHAR(255),
    description TEXT,
    UNIQUE (key, plugin_id)
);

-- FlaskBB's default groups (flaskbb/fixtures/groups.py), in its order.
INSERT INTO groups (id, name, description, admin, super_mod, mod, guest, banned,
                    mod_edituser, mod_banuser, editpost, deletepost, deletetopic,
                    posttopic, postreply, viewhidden, makehidden) VALUES
  (1, 'Administrator', 'The Administrator Group', TRUE, FALSE, FALSE, FALSE, FALSE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE),
  (2, 'Super Moderator', 'The Super Moderator Group', FALSE, TRUE, FALSE, FALSE, FALSE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE),
  (3, 'Moderator', 'The Moderator Group', FALSE, FALSE, TRUE, FALSE, FALSE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, FALSE),
  (4, 'Member', 'The Member Group', FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, TRUE, FALSE, FALSE, TRUE, TRUE, FALSE, FALSE),
  (5, 'Banned', 'The Banned Group', FALSE, FALSE, FALSE, FALSE, TRUE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE),
  (6, 'Guest', 'The Guest Group', FALSE, FALSE, FALSE, TRUE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE);

-- The explicit ids above do not advance the sequence.
SELECT setval('groups_id_seq', (SELECT MAX(id) FROM groups));
