-- FlaskBB's tables and columns (flaskbb/user/models.py, flaskbb/plugins/models.py),
-- so the daemon and FlaskBB can share a database. users.password is wider than
-- FlaskBB's String(120): werkzeug's scrypt hashes are 162 characters.
CREATE TABLE groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name VARCHAR(255) NOT NULL UNIQUE,
    description TEXT,
    admin BOOLEAN NOT NULL DEFAULT 0,
    super_mod BOOLEAN NOT NULL DEFAULT 0,
    mod BOOLEAN NOT NULL DEFAULT 0,
    guest BOOLEAN NOT NULL DEFAULT 0,
    banned BOOLEAN NOT NULL DEFAULT 0,
    mod_edituser BOOLEAN NOT NULL DEFAULT 0,
    mod_banuser BOOLEAN NOT NULL DEFAULT 0,
    editpost BOOLEAN NOT NULL DEFAULT 1,
    deletepost BOOLEAN NOT NULL DEFAULT 0,
    deletetopic BOOLEAN NOT NULL DEFAULT 0,
    posttopic BOOLEAN NOT NULL DEFAULT 1,
    postreply BOOLEAN NOT NULL DEFAULT 1,
    viewhidden BOOLEAN NOT NULL DEFAULT 0,
    makehidden BOOLEAN NOT NULL DEFAULT 0
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
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
    activated BOOLEAN DEFAULT 0,
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
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name VARCHAR(255) NOT NULL UNIQUE,
    enabled BOOLEAN DEFAULT 1
);

CREATE TABLE plugin_store (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
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
  (1, 'Administrator', 'The Administrator Group', 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1),
  (2, 'Super Moderator', 'The Super Moderator Group', 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1),
  (3, 'Moderator', 'The Moderator Group', 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0),
  (4, 'Member', 'The Member Group', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0),
  (5, 'Banned', 'The Banned Group', 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0),
  (6, 'Guest', 'The Guest Group', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
