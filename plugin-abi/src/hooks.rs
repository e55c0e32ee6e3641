//! FlaskBB's hook names, exactly as `flaskbb.plugins.spec` spells them, and what the
//! daemon needs to know of each.

pub const AUTHENTICATE: &str = "flaskbb_authenticate";
pub const POST_AUTHENTICATE: &str = "flaskbb_post_authenticate";
pub const AUTHENTICATION_FAILED: &str = "flaskbb_authentication_failed";
pub const REAUTH_ATTEMPT: &str = "flaskbb_reauth_attempt";
pub const POST_REAUTH: &str = "flaskbb_post_reauth";
pub const REAUTH_FAILED: &str = "flaskbb_reauth_failed";
pub const POST_SAVE_BEFORE: &str = "flaskbb_event_post_save_before";
pub const POST_SAVE_AFTER: &str = "flaskbb_event_post_save_after";
pub const TOPIC_SAVE_BEFORE: &str = "flaskbb_event_topic_save_before";
pub const TOPIC_SAVE_AFTER: &str = "flaskbb_event_topic_save_after";
pub const USER_REGISTERED: &str = "flaskbb_event_user_registered";

/// Every hook, in the order of FlaskBB's spec.
pub const ALL: &[&str] = &[
    AUTHENTICATE,
    POST_AUTHENTICATE,
    AUTHENTICATION_FAILED,
    REAUTH_ATTEMPT,
    POST_REAUTH,
    REAUTH_FAILED,
    POST_SAVE_BEFORE,
    POST_SAVE_AFTER,
    TOPIC_SAVE_BEFORE,
    TOPIC_SAVE_AFTER,
    USER_REGISTERED,
];
