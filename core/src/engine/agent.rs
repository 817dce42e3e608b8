//! Decisions for ephemeral identities (`crate::ephemeral`): the parent's decision ANDed with the identity's
//! own permission rules on the request's XBackend. A child of the engine so it reuses the rule evaluation.

use super::{activation, compile_target, evaluate, Decision, Engine, LevelOutcome, Request, RuleCtx};
use crate::config::{Policy, Target};
use crate::ephemeral::EphemeralIdentity;
use crate::mcp::McpOp;
use std::collections::HashMap;

/// One ephemeral identity, ready to decide.
pub(super) struct CompiledAgent {
    pub(super) config: EphemeralIdentity,
    /// Backend index → its permission rules, as a one-policy target named after the identity.
    targets: HashMap<u32, super::CompiledTarget>,
}

/// Every ephemeral identity of a config, by the principal its token names.
#[derive(Default)]
pub(super) struct Agents {
    by_principal: HashMap<String, CompiledAgent>,
}

impl Agents {
    pub(super) fn compile(list: &[EphemeralIdentity], backend_count: usize) -> Result<Agents, super::ConfigError> {
        crate::ephemeral::validate(list, backend_count).map_err(|(p, m)| super::config_error(p, m))?;
        let mut by_principal = HashMap::with_capacity(list.len());
        for (i, e) in list.iter().enumerate() {
            let mut targets = HashMap::with_capacity(e.permissions.len());
            for (j, p) in e.permissions.iter().enumerate() {
                let at = format!("settings.identity.ephemeral[{i}].permissions[{j}]");
                let target = Target { name: e.name.clone(), policies: vec![Policy { name: e.name.clone(), rules: p.rules.clone() }], external_auth: None };
                // No rule names a principal (validated), so no principal index is needed.
                let compiled = compile_target(&target, &at, 0)?;
                if targets.insert(p.backend, compiled).is_some() {
                    return Err(super::config_error(format!("{at}.backend"), "two permission entries for one backend"));
                }
            }
            by_principal.insert(e.principal.clone(), CompiledAgent { config: e.clone(), targets });
        }
        Ok(Agents { by_principal })
    }

    pub(super) fn get(&self, principal: Option<&str>) -> Option<&CompiledAgent> {
        if self.by_principal.is_empty() {
            return None;
        }
        self.by_principal.get(principal?)
    }

    pub(super) fn targets(&self) -> impl Iterator<Item = &super::CompiledTarget> {
        self.by_principal.values().flat_map(|a| a.targets.values())
    }
}

impl Engine {
    /// The ephemeral identity a caller is, if any.
    pub fn ephemeral(&self, principal: Option<&str>) -> Option<&EphemeralIdentity> {
        self.agents.get(principal).map(|a| &a.config)
    }

    /// The parent must be allowed the request (judged without the token's claims: they are the child's),
    /// and one of the child's rules on the request's backend must match. The child's permission outcome
    /// takes the backend slot of the decision, so audit records name the GrantwallAgentIdentity and rule.
    pub(super) fn decide_agent<'e>(&'e self, agent: &'e CompiledAgent, req: &Request<'_>, op: Option<&McpOp<'_>>, listing: bool) -> Decision<'e> {
        let parent_req = Request { principal: Some(agent.config.parent.as_str()), jwt_claims: None, ..*req };
        let parent = self.decide_with(&parent_req, op, listing);
        if !parent.allowed {
            return parent;
        }
        let act = activation(req, op, listing);
        let mut cel_error = None;
        let own = match req.backend.and_then(|b| agent.targets.get(&b)) {
            Some(target) => {
                let mut ctx = RuleCtx { req, op, act: &act, cel_error: &mut cel_error };
                evaluate(target, None, &mut ctx)
            }
            // No permission on this backend (or no backend at all): nothing is granted.
            None => LevelOutcome::DefaultDeny,
        };
        Decision { allowed: own.allows(), gateway: parent.gateway, backend: own, cel_error }
    }
}
