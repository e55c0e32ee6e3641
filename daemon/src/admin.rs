//! The core of `org.flaskbb.Admin`: users and locks, each a blocking step on the
//! store that the transport runs on the pool (`Daemon::blocking`). The transport maps
//! the outcomes onto the interface's replies and errors; nothing here knows Varlink.

use chrono::Utc;

use crate::{
    daemon::Daemon,
    lockout,
    proto::{LockState, User},
    store::{NewUser, StoreError, MEMBER_GROUP},
};

impl Daemon {
    /// `password` hashed the way the configured schema stores it; `None` when it
    /// cannot be (longer than bcrypt takes).
    pub(crate) fn hash_for_store(&self, password: &str) -> Option<String> {
        let schema = self.config().database.schema;
        self.generation().verifier.hash_for(schema, password).ok()
    }

    /// Creates a member (in the Member group) with an already hashed password.
    pub(crate) fn create_user(
        &self,
        username: String,
        email: String,
        password_hash: String,
        activated: bool,
    ) -> Result<User, StoreError> {
        let created = self.store.create_user(&NewUser {
            username,
            email,
            password_hash: Some(password_hash),
            activated,
            primary_group_id: MEMBER_GROUP,
        })?;
        Ok(created.user)
    }

    /// A user by username or email address, with the lock state of the account.
    pub(crate) fn user_and_lock(
        &self,
        identifier: &str,
    ) -> Result<Option<(User, LockState)>, StoreError> {
        let Some(found) = self.store.find_user(identifier)? else {
            return Ok(None);
        };
        let policy = lockout::Policy::new(&self.config().auth.lockout);
        let lock = lockout::lock_state(&policy, &*self.store, found.user.id, Utc::now())?;
        Ok(Some((found.user, lock)))
    }

    /// Lifts an account's lock, everywhere or for one address; how many live counts
    /// it removed (an unlock that removed any is counted in the metrics).
    pub(crate) fn unlock(
        &self,
        identifier: &str,
        address: Option<&str>,
    ) -> Result<u64, StoreError> {
        let cleared = lockout::unlock(&*self.store, identifier, address, Utc::now())?;
        if cleared > 0 {
            crate::metrics::global().lockout(crate::metrics::LockoutAction::Unlocked);
        }
        Ok(cleared as u64)
    }

    /// Replaces a user's password hash.
    pub(crate) fn set_password_hash(&self, user_id: i64, hash: &str) -> Result<(), StoreError> {
        self.store.set_password(user_id, hash)
    }

    /// Activates or deactivates a user.
    pub(crate) fn set_activated(&self, user_id: i64, activated: bool) -> Result<(), StoreError> {
        self.store.set_activated(user_id, activated)
    }

    /// Bans or unbans a user.
    pub(crate) fn set_banned(&self, user_id: i64, banned: bool) -> Result<(), StoreError> {
        self.store.set_banned(user_id, banned)
    }
}
