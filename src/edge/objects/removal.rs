//! Removing a registered account (an admin's delete, an authorizer's withdrawal): the
//! registry, the edge's copies and the account's object, in an order that a retry finishes.

use crate::edge::objects::directory;
use crate::edge::objects::object_client;
use crate::edge::objects::reader;
use crate::edge::objects::registry;
use crate::error::AppError;
use crate::policy::registry::Registered;
use worker::Env;

/// Removes a registered account (an admin's delete, an authorizer's withdrawal of
/// `withdrawn_at`, its push's CreateTime): its registration and the edge's copy (the
/// registry removes both, leaving a tombstone), then its object's state, alarm and KV
/// entries, then the tombstone. None: there was no such registration. A removal that failed
/// half way is found by its tombstone: a retry (or the cron) finishes it.
pub async fn remove(
    env: &Env,
    id: &str,
    withdrawn_at: Option<u64>,
) -> Result<Option<Registered>, AppError> {
    // A withdrawal asks the object first: it alone knows, atomically with its state, whether
    // a newer authorization stands (409: then nothing is removed).
    if withdrawn_at.is_some() {
        object_client::erase(env, id, withdrawn_at).await?;
    }
    // The registration goes first, so that nothing can bring the account back (an object
    // woken by a late read finds it unknown); then its state (again, for a withdrawal:
    // whatever a read loaded meanwhile).
    let Some(deleted) = registry::delete(env, id).await? else {
        return Ok(None);
    };
    directory::forget_registered(id, true);
    reader::forget_account(id);
    object_client::erase(env, id, withdrawn_at).await?;
    registry::bury(env, id, deleted.deleted_at).await?;
    Ok(Some(deleted.entry))
}
