DROP TABLE plugin_store;
DROP TABLE plugin_registry;
DROP TABLE groups_users;
DROP TABLE users;
DROP TABLE groups;
