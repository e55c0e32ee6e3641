//! diesel's view of FlaskBB's tables: only the columns the daemon reads or writes.

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        email -> Text,
        password -> Nullable<Text>,
        date_joined -> Nullable<Timestamp>,
        last_failed_login -> Nullable<Timestamp>,
        login_attempts -> Nullable<Integer>,
        activated -> Nullable<Bool>,
        primary_group_id -> BigInt,
    }
}

diesel::table! {
    groups (id) {
        id -> BigInt,
        name -> Text,
        banned -> Bool,
    }
}

diesel::table! {
    groups_users (user_id, group_id) {
        user_id -> BigInt,
        group_id -> BigInt,
    }
}

diesel::table! {
    plugin_registry (id) {
        id -> BigInt,
        name -> Text,
        enabled -> Nullable<Bool>,
    }
}

diesel::table! {
    plugin_store (id) {
        id -> BigInt,
        key -> Text,
        value -> Nullable<Text>,
        value_type -> Text,
        plugin_id -> Nullable<BigInt>,
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
