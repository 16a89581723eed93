//! Authorisation: may this principal perform this action on this resource?
//!
//! The account's root keys may do everything. Any other principal (an IAM user's keys, an
//! assumed-role session, and later a function or a delivery stream acting with its role) may
//! do exactly what its identity policies allow: explicit Deny wins, then any Allow, else the
//! default deny. A principal's policies (inline, attached customer-managed and AWS-managed,
//! of the user or of the role behind the session) are compiled once into a [`PolicySet`] and
//! cached; the cache is keyed by the store's generation, which every IAM write bumps, so a
//! decision after a policy change always sees the change.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::policy::{ConditionContext, Decision, PolicySet, Request};
use crate::{Iam, Principal, PrincipalKind};

/// A refusal, with AWS's message naming the principal, the action and the resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    /// `User: <arn> is not authorized to perform: <action> on resource: <arn> because …`.
    pub message: String,
}

/// The authoriser shared by every service.
#[derive(Debug)]
pub struct Authorizer {
    iam: Arc<Iam>,
    enabled: bool,
    cache: RwLock<HashMap<String, (u64, Arc<PolicySet>)>>,
}

impl Authorizer {
    /// An authoriser over `store`; with `enabled = false` every authenticated request is allowed
    /// (`--iam off`).
    pub fn new(iam: Arc<Iam>, enabled: bool) -> Self {
        Self {
            iam,
            enabled,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Whether policies are enforced.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn policies(&self, principal: &Principal) -> Arc<PolicySet> {
        let generation = self.iam.generation();
        if let Some((g, set)) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(&principal.arn)
            && *g == generation
        {
            return set.clone();
        }
        let docs = self.iam.identity_policies(principal);
        let set = Arc::new(PolicySet::compile(&docs));
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(principal.arn.clone(), (generation, set.clone()));
        set
    }

    /// Ok when `principal` may perform `action` on `resource`.
    pub fn check(
        &self,
        principal: &Principal,
        action: &str,
        resource: &str,
        context: &ConditionContext,
    ) -> Result<(), Denied> {
        if !self.enabled || matches!(principal.kind, PrincipalKind::Root) {
            return Ok(());
        }
        let set = self.policies(principal);
        match set.evaluate(&Request::new(action, resource, context)) {
            Decision::Allow => Ok(()),
            Decision::ExplicitDeny => Err(Denied {
                message: format!(
                    "User: {} is not authorized to perform: {action} on resource: {resource} with an explicit deny in an identity-based policy",
                    principal.arn
                ),
            }),
            Decision::ImplicitDeny => Err(Denied {
                message: format!(
                    "User: {} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action",
                    principal.arn
                ),
            }),
        }
    }

    /// The standard condition keys of a request by `principal`.
    pub fn context_for(&self, principal: &Principal) -> ConditionContext {
        let mut ctx = ConditionContext::new()
            .principal_arn(&principal.arn)
            .principal_account(&principal.account_id)
            .userid(&principal.user_id)
            .current_time(std::time::SystemTime::now());
        if let PrincipalKind::User { user_name } = &principal.kind {
            ctx = ctx.username(user_name);
        }
        ctx
    }
}
