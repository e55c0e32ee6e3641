//! diesel's view of FlaskBB's tables: only the columns the daemon reads or writes.

diesel::table! {
    users (id) {
        id -> Integer,
        username -> Text,
        email -> Text,
        password -> Nullable<Text>,
        date_joined -> Nullable<Timestamp>,
        lastseen -> Nullable<Timestamp>,
        last_failed_login -> Nullable<Timestamp>,
        login_attempts -> Nullable<Integer>,
        activated -> Nullable<Bool>,
        language -> Nullable<Text>,
        post_count -> Nullable<Integer>,
        primary_group_id -> Integer,
    }
}

diesel::table! {
    groups (id) {
        id -> Integer,
        name -> Text,
        banned -> Bool,
    }
}

diesel::table! {
    groups_users (user_id, group_id) {
        user_id -> Integer,
        group_id -> Integer,
    }
}

diesel::table! {
    plugin_registry (id) {
        id -> Integer,
        name -> Text,
        enabled -> Nullable<Bool>,
    }
}

diesel::table! {
    plugin_store (id) {
        id -> Integer,
        key -> Text,
        value -> Nullable<Text>,
        value_type -> Text,
        plugin_id -> Nullable<Integer>,
    }
}

diesel::joinable!(users -> groups (primary_group_id));
diesel::joinable!(plugin_store -> plugin_registry (plugin_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    groups,
    groups_users,
    plugin_registry,
    plugin_store
);

// With `database.schema = "flaskbb"`, FlaskBB's plugin_registry and plugin_store are
// FlaskBB's own (its Python plugins, pickled settings): the daemon keeps its instance
// states and key-value stores in these two tables instead, and adds nothing else.
diesel::table! {
    flaskbbd_plugin_registry (id) {
        id -> Integer,
        name -> Text,
        enabled -> Nullable<Bool>,
    }
}

diesel::table! {
    flaskbbd_plugin_store (id) {
        id -> Integer,
        key -> Text,
        value -> Nullable<Text>,
        value_type -> Text,
        plugin_id -> Nullable<Integer>,
    }
}

diesel::joinable!(flaskbbd_plugin_store -> flaskbbd_plugin_registry (plugin_id));
diesel::allow_tables_to_appear_in_same_query!(
    flaskbbd_plugin_registry,
    flaskbbd_plugin_store,
    users
);

// With `database.schema = "flaskbb"`, a rehash on login does not overwrite FlaskBB's
// users.password (FlaskBB's werkzeug cannot verify bcrypt): the bcrypt hash goes here,
// with the werkzeug hash it replaces, and is used only while users.password still
// holds that hash.
diesel::table! {
    flaskbbd_password_hashes (user_id) {
        user_id -> Integer,
        hash -> Text,
        replaces -> Text,
    }
}

// Failure counts for the lockout and rate limits, in both schemas (see the migration
// `2026-12-02-000001_penalties`). Times are Unix milliseconds.
diesel::table! {
    flaskbbd_penalties (kind, subject, address) {
        kind -> Text,
        subject -> Text,
        address -> Text,
        failures -> Integer,
        last_failure -> BigInt,
        expires -> BigInt,
    }
}
